import { EventEmitter } from 'node:events'
import KBucket from 'k-bucket'
import { FingerprintMismatchError, SnapshotError, UnknownContactError } from './errors.js'
import { cachedNodeId, compareDistance } from './id.js'
import { assertNewer, assertRecordShape, verifyPeerRecord, type RecordVerifier, type SignedPeerRecord } from './record.js'

/** One admitted peer as the table holds it. */
export interface PeerContact {
  uuid: string
  /** `nodeIdOf(uuid)`; always computed locally */
  id: Uint8Array
  addresses: string[]
  /** the peer's OpenPGP key fingerprint, fixed at admission */
  fingerprint: string
  /** ms since epoch when we last heard from the peer itself */
  lastSeen: number
  /** the newest verified record the addresses came from, if any */
  record?: SignedPeerRecord
}

/** What the caller hands to `add()` after admitting a peer. */
export interface NewContact {
  uuid: string
  addresses: string[]
  fingerprint: string
  /** @default now */
  lastSeen?: number
}

/** `add()` outcome: `pending` means the bucket was full and a `ping` event went to liveness. */
export type AddResult = 'added' | 'updated' | 'pending' | 'self'

/** k-bucket's "bucket full" moment: ping `oldest`; evict the dead ones, then offer `candidate` again. */
export interface PingRequest {
  oldest: Array<Readonly<PeerContact>>
  candidate: NewContact
}

export interface PeerTableEvents {
  'peer:add': [Readonly<PeerContact>]
  'peer:update': [Readonly<PeerContact>]
  'peer:remove': [Readonly<PeerContact>]
  'ping': [PingRequest]
}

export interface SnapshotContact {
  uuid: string
  addresses: string[]
  fingerprint: string
  lastSeen: number
  record?: SignedPeerRecord
}

/** The persisted form: plain JSON, ids left out because they are derived. */
export interface PeerTableSnapshot {
  version: 1
  self: string
  /** least recently seen first, so restoring keeps each bucket's order */
  contacts: SnapshotContact[]
}

/** Where the table is persisted between runs. */
export interface PeerTableStore {
  load: () => Promise<PeerTableSnapshot | undefined>
  save: (snapshot: PeerTableSnapshot) => Promise<void>
}

export interface PeerTableInit {
  /**
   * Bucket size k. Keep it small: k-bucket's `closest()` sorts whole buckets,
   * so its cost grows with k (PERF-NOTES §4).
   * @default 20
   */
  k?: number
  /**
   * How many of the least recently seen contacts a full bucket offers for pinging.
   * @default 3
   */
  pingCount?: number
}

export interface PeerTableComponents {
  /** the local peer; it is never a contact of its own table */
  self: { uuid: string }
  /** checks signed records in `applyRecord()`; without one, every record is refused */
  verifier?: RecordVerifier
  /** load at `start()`, save at `stop()` and `flush()` */
  store?: PeerTableStore
  /** @default Date.now */
  now?: () => number
}

export const DEFAULT_K = 20
export const DEFAULT_PING_COUNT = 3

export interface PeerTable {
  readonly self: { uuid: string, id: Uint8Array }
  readonly k: number
  readonly size: number
  start: () => Promise<void>
  stop: () => Promise<void>
  add: (contact: NewContact) => AddResult
  remove: (uuid: string) => boolean
  get: (uuid: string) => Readonly<PeerContact> | undefined
  /** up to `n` contacts closest to `id` by XOR, closest first. @default n = k */
  closest: (id: Uint8Array, n?: number) => Array<Readonly<PeerContact>>
  all: () => Array<Readonly<PeerContact>>
  /** we heard from `uuid` directly: bump lastSeen and make it the most recent in its bucket */
  touch: (uuid: string, at?: number) => boolean
  /** replace `uuid`'s addresses with a verified, newer record; typed refusal otherwise */
  applyRecord: (uuid: string, record: unknown) => Promise<Readonly<PeerContact>>
  toJSON: () => PeerTableSnapshot
  /** add a snapshot's contacts (records are trusted: they were verified before they were saved) */
  restore: (snapshot: unknown) => void
  /** save to the store now */
  flush: () => Promise<void>
  on: EventEmitter<PeerTableEvents>['on']
  off: EventEmitter<PeerTableEvents>['off']
}

class KBucketPeerTable extends EventEmitter<PeerTableEvents> implements PeerTable {
  readonly self: { uuid: string, id: Uint8Array }
  readonly k: number
  private readonly bucket: KBucket<PeerContact>
  private readonly components: PeerTableComponents
  private readonly now: () => number
  private running = false
  private restoring = false

  constructor (init: PeerTableInit, components: PeerTableComponents) {
    super()
    const uuid = components.self.uuid.toLowerCase()
    this.self = { uuid, id: cachedNodeId(uuid) }
    this.k = init.k ?? DEFAULT_K
    this.components = components
    this.now = components.now ?? Date.now
    this.bucket = new KBucket<PeerContact>({
      localNodeId: this.self.id,
      numberOfNodesPerKBucket: this.k,
      numberOfNodesToPing: init.pingCount ?? DEFAULT_PING_COUNT,
      // we merge before calling add(), so the candidate is always the version to keep
      arbiter: (_incumbent, candidate) => candidate
    })
    this.bucket.on('ping', (oldest: PeerContact[], candidate: PeerContact) => this.onBucketFull(oldest, candidate))
  }

  get size (): number {
    return this.bucket.count()
  }

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    const snapshot = await this.components.store?.load()
    if (snapshot !== undefined) this.restore(snapshot)
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    await this.flush()
  }

  async flush (): Promise<void> {
    await this.components.store?.save(this.toJSON())
  }

  add (contact: NewContact): AddResult {
    const uuid = contact.uuid.toLowerCase()
    if (uuid === this.self.uuid) return 'self'
    const held = this.get(uuid)
    if (held !== undefined) return this.refresh(held, contact)
    const fresh: PeerContact = {
      uuid,
      id: cachedNodeId(uuid),
      addresses: [...contact.addresses],
      fingerprint: contact.fingerprint,
      lastSeen: contact.lastSeen ?? this.now()
    }
    this.bucket.add(fresh)
    if (this.bucket.get(fresh.id) !== fresh) return 'pending'
    this.emit('peer:add', fresh)
    return 'added'
  }

  /**
   * A known peer offered again. Addresses are left alone on purpose: only a
   * signed, newer record may move a peer (see `applyRecord`), so a third
   * party repeating a stale or forged address changes nothing.
   */
  private refresh (held: PeerContact, contact: NewContact): AddResult {
    if (held.fingerprint !== contact.fingerprint) {
      throw new FingerprintMismatchError(`peer ${held.uuid} offered with fingerprint ${contact.fingerprint}, admitted with ${held.fingerprint}`)
    }
    if (contact.lastSeen !== undefined && contact.lastSeen > held.lastSeen) this.touch(held.uuid, contact.lastSeen)
    return 'updated'
  }

  remove (uuid: string): boolean {
    const held = this.get(uuid)
    if (held === undefined) return false
    this.bucket.remove(held.id)
    this.emit('peer:remove', held)
    return true
  }

  get (uuid: string): PeerContact | undefined {
    return this.bucket.get(cachedNodeId(uuid)) ?? undefined
  }

  closest (id: Uint8Array, n: number = this.k): PeerContact[] {
    if (n <= 0 || this.bucket.count() === 0) return []
    // k-bucket picks the right buckets but sorts by a lossy float distance; re-sort exactly
    return this.bucket.closest(id, n).sort((a, b) => compareDistance(id, a.id, b.id))
  }

  all (): PeerContact[] {
    return this.bucket.toArray()
  }

  touch (uuid: string, at: number = this.now()): boolean {
    const held = this.get(uuid)
    if (held === undefined) return false
    held.lastSeen = Math.max(held.lastSeen, at)
    // re-adding the same object moves it to the tail: most recently seen
    this.bucket.add(held)
    return true
  }

  async applyRecord (uuid: string, record: unknown): Promise<PeerContact> {
    assertRecordShape(record)
    const before = this.get(uuid)
    if (before === undefined) throw new UnknownContactError(`no contact ${uuid} to apply a record to`)
    // refuse stale records before paying for a signature check
    assertNewer(before.record, record)
    const verifier = this.components.verifier ?? { verify: () => false }
    const verified = await verifyPeerRecord(verifier, record, uuid)
    // the table may have changed while we awaited the verifier
    const held = this.get(uuid)
    if (held === undefined) throw new UnknownContactError(`contact ${uuid} left while its record was checked`)
    assertNewer(held.record, verified)
    held.addresses = [...verified.addresses]
    held.record = verified
    this.emit('peer:update', held)
    return held
  }

  toJSON (): PeerTableSnapshot {
    const contacts = this.all()
      .sort((a, b) => a.lastSeen - b.lastSeen)
      .map(toSnapshotContact)
    return { version: 1, self: this.self.uuid, contacts }
  }

  restore (snapshot: unknown): void {
    const snap = checkSnapshot(snapshot, this.self.uuid)
    // overflow while restoring (e.g. k was lowered) is dropped, not pinged: liveness is not up yet
    this.restoring = true
    try {
      for (const c of snap.contacts) this.restoreOne(c)
    } finally {
      this.restoring = false
    }
  }

  private restoreOne (c: SnapshotContact): void {
    if (this.add(c) !== 'added' || c.record === undefined) return
    assertRecordShape(c.record)
    const held = this.get(c.uuid)
    if (held !== undefined) held.record = c.record
  }

  private onBucketFull (oldest: PeerContact[], candidate: PeerContact): void {
    if (this.restoring) return
    const { uuid, addresses, fingerprint, lastSeen } = candidate
    this.emit('ping', { oldest, candidate: { uuid, addresses, fingerprint, lastSeen } })
  }
}

function toSnapshotContact (c: PeerContact): SnapshotContact {
  const out: SnapshotContact = { uuid: c.uuid, addresses: [...c.addresses], fingerprint: c.fingerprint, lastSeen: c.lastSeen }
  if (c.record !== undefined) out.record = c.record
  return out
}

function checkSnapshot (s: unknown, selfUuid: string): PeerTableSnapshot {
  const snap = s as Partial<PeerTableSnapshot> | null
  if (snap === null || typeof snap !== 'object' || snap.version !== 1 || !Array.isArray(snap.contacts)) {
    throw new SnapshotError('peer table snapshot has an unknown shape or version')
  }
  if (typeof snap.self !== 'string' || snap.self.toLowerCase() !== selfUuid) {
    throw new SnapshotError(`peer table snapshot belongs to ${String(snap.self)}, not ${selfUuid}`)
  }
  for (const c of snap.contacts) {
    const ok = c !== null && typeof c === 'object' && typeof c.uuid === 'string' &&
      Array.isArray(c.addresses) && typeof c.fingerprint === 'string' && Number.isFinite(c.lastSeen)
    if (!ok) throw new SnapshotError('peer table snapshot holds a malformed contact')
  }
  return snap as PeerTableSnapshot
}

/** Create a peer table. Contacts enter only through `add()`, after the caller admitted them. */
export function createPeerTable (init: PeerTableInit, components: PeerTableComponents): PeerTable {
  return new KBucketPeerTable(init, components)
}
