import type { ColumnType, Generated } from 'kysely'

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>
type BigIntCol = ColumnType<string | number, number | bigint | string, number | bigint | string>

export interface PeersTable {
  uuid: string
  domain: string
  address: string
  fingerprint: string
  public_key: string
  signal_identity: Buffer
  signal_bundle: unknown
  state: ColumnType<'active' | 'banned', 'active' | 'banned' | undefined, 'active' | 'banned'>
  admitted_at: Timestamp
  last_seen: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  sponsor: string | null
}

export interface RatchetSessionsTable {
  peer_uuid: string
  record: Buffer
  updated_at: Timestamp
}

export interface PeerSeqTable {
  peer_uuid: string
  next_out: BigIntCol
  last_in: BigIntCol
}

export interface OutboxTable {
  peer_uuid: string
  seq: BigIntCol
  name: string
  envelope: string
  exp: BigIntCol
  created_at: Timestamp
}

export interface InboxTable {
  id: Generated<string>
  from_uuid: string
  seq: BigIntCol
  name: string
  envelope: string
  exp: BigIntCol
  received_at: Timestamp
}

export interface ServicesTable {
  name: string
  token_sha256: Buffer
  receive: string[]
  send: string[]
  delivered: BigIntCol
  state: ColumnType<'active' | 'revoked' | 'banned', 'active' | 'revoked' | 'banned' | undefined, 'active' | 'revoked' | 'banned'>
  created_at: Timestamp
  updated_at: Timestamp
}

export interface InvitesTable {
  secret_file: string
  admin: string
  secret: string
  proofs_needed: ColumnType<number, number | undefined, number>
  created_at: Timestamp
  used_by: string | null
}

export interface JoinRequestsTable {
  uuid: string
  domain: string
  address: string
  admin: string
  public_key: string
  fingerprint: string
  signal_bundle: unknown
  proofs: string[]
  proofs_needed: number
  state: ColumnType<'pending' | 'approved' | 'rejected', 'pending' | 'approved' | 'rejected' | undefined, 'pending' | 'approved' | 'rejected'>
  introduced_by: ColumnType<string | null, string | null | undefined, string | null>
  created_at: Timestamp
  updated_at: Timestamp
}

export interface JoinAttemptsTable {
  peer_uuid: string
  address: string
  public_key: string
  state: ColumnType<'sent' | 'accepted', 'sent' | 'accepted' | undefined, 'sent' | 'accepted'>
  created_at: Timestamp
}

export interface SeenNoncesTable {
  nonce: string
  exp: BigIntCol
}

export interface ResourcesTable {
  id: Generated<string>
  service: string
  kind: string
  name: string
  value: string | null
  created_at: Timestamp
}

export interface AppdataTable {
  id: Generated<string>
  service: string
  resource_id: string | null
  key: string
  value: unknown
  created_at: Timestamp
  updated_at: Timestamp
}

export interface ServiceSendsTable {
  service: string
  nonce: string
  created_at: Timestamp
}

export interface PeerCandidatesTable {
  uuid: string
  domain: string
  address: string
  public_key: string
  fingerprint: string
  signal_bundle: unknown
  introduced_by: string
  state: ColumnType<'heard' | 'greeting' | 'greeted', 'heard' | 'greeting' | 'greeted' | undefined, 'heard' | 'greeting' | 'greeted'>
  attempts: ColumnType<number, number | undefined, number>
  next_try: Timestamp
  created_at: Timestamp
}

export interface PeerRecordsTable {
  uuid: string
  domain: string
  address: string
  seq: BigIntCol
  sig: string
  updated_at: Timestamp
}

export interface BansTable {
  uuid: string
  reason: string
  banned_by: string
  sponsor: string | null
  state: ColumnType<'applied' | 'proposed', 'applied' | 'proposed' | undefined, 'applied' | 'proposed'>
  created_at: Timestamp
}

/** Peers that have not confirmed our newest OpenPGP key yet (key rotation, src/peers/key-rotation.ts). */
export interface OwnKeyRotationsTable {
  peer_uuid: string
  fingerprint: string
  announcement: string
  submitted: ColumnType<boolean, boolean | undefined, boolean>
  created_at: Timestamp
}

/** A peer's replaced OpenPGP key, still accepted until valid_until (seconds). */
export interface PeerPreviousKeysTable {
  peer_uuid: string
  fingerprint: string
  public_key: string
  valid_until: BigIntCol
}

export interface Schema {
  own_key_rotations: OwnKeyRotationsTable
  peer_previous_keys: PeerPreviousKeysTable
  peer_candidates: PeerCandidatesTable
  bans: BansTable
  peer_records: PeerRecordsTable
  service_sends: ServiceSendsTable
  peers: PeersTable
  ratchet_sessions: RatchetSessionsTable
  peer_seq: PeerSeqTable
  outbox: OutboxTable
  inbox: InboxTable
  services: ServicesTable
  invites: InvitesTable
  join_requests: JoinRequestsTable
  join_attempts: JoinAttemptsTable
  seen_nonces: SeenNoncesTable
  resources: ResourcesTable
  appdata: AppdataTable
}
