import type { Db } from '../db/index.js'
import { BadSignatureError, NotFoundError, SchemaError } from '../errors.js'
import type { Identity } from '../identity/files.js'
import type { Logger } from '../logger.js'
import { signDetached, verifyDetached } from '../identity/openpgp.js'
import { ADDRESS, isUuid } from '../wire/frame.js'
import type { PeerDirectory } from './directory.js'

/**
 * A peer's own statement of where it can be reached (issue 5, "signed peer
 * records"). Only the peer itself can make one (it is signed with its
 * OpenPGP key, which every peer that admitted it has pinned), so any peer may
 * forward it: a record that reaches us through a third peer is as good as
 * one from the peer itself. `seq` orders them: a record replaces only an
 * older one, so a replayed old record cannot send us back to a dead address.
 */
export interface PeerRecord {
  uuid: string
  domain: string
  address: string
  seq: number
}

/** A record and its detached OpenPGP signature (base64) over `recordBytes(record)`. */
export interface SignedPeerRecord extends PeerRecord {
  sig: string
}

/**
 * Domain separation: these bytes can never be mistaken for a frame, an
 * envelope or any other thing the same key signs.
 */
const RECORD_TAG = 'center-peer-record/1'
const MAX_SIG_CHARS = 4096

/** The exact bytes signed: a JSON array in a fixed order, independent of key order or extra fields. */
export function recordBytes (r: PeerRecord): Buffer {
  return Buffer.from(JSON.stringify([RECORD_TAG, r.uuid, r.domain, r.address, r.seq]))
}

/**
 * The next sequence number for our own record: above the last one, and at
 * least the time in ms, so a peer whose database was restored from an old
 * backup (and forgot its last seq) still makes records the others take.
 */
export function nextSeq (previous: number, now = Date.now()): number {
  return Math.max(previous + 1, now)
}

export async function signRecord (r: PeerRecord, identity: Pick<Identity, 'privateKey'>): Promise<SignedPeerRecord> {
  const sig = await signDetached(recordBytes(r), identity.privateKey)
  return { uuid: r.uuid, domain: r.domain, address: r.address, seq: r.seq, sig: Buffer.from(sig).toString('base64') }
}

/** Throws SchemaError unless `v` has the shape of a signed record. Extra fields are dropped. */
export function checkRecord (v: unknown): SignedPeerRecord {
  const r = v as Record<string, unknown> | null
  if (typeof r !== 'object' || r === null) throw new SchemaError('peer record must be an object')
  if (!isUuid(r.uuid)) throw new SchemaError('peer record uuid must be a lowercase UUID')
  if (typeof r.domain !== 'string' || !/^[A-Za-z0-9.-]{1,253}$/.test(r.domain)) throw new SchemaError('peer record domain must be a domain name')
  if (typeof r.address !== 'string' || !ADDRESS.test(r.address)) throw new SchemaError('peer record address must be HOST:PORT')
  if (!Number.isSafeInteger(r.seq) || (r.seq as number) < 1) throw new SchemaError('peer record seq must be a positive integer')
  if (typeof r.sig !== 'string' || r.sig.length > MAX_SIG_CHARS || !/^[A-Za-z0-9+/]+=*$/.test(r.sig)) throw new SchemaError('peer record sig must be a base64 OpenPGP signature')
  return { uuid: r.uuid, domain: r.domain, address: r.address, seq: r.seq as number, sig: r.sig }
}

export interface PeerRecordsComponents {
  db: Db
  identity: Identity
  peers: PeerDirectory
  logger: Logger
}

export type RecordOutcome = 'applied' | 'stale' | 'own'

/**
 * The `peer_records` table: our own last announced record, and the newest
 * verified record of each admitted peer. Applying a peer's record moves its
 * address in the directory, which makes its link dial the new one.
 */
export class PeerRecords {
  constructor (private readonly c: PeerRecordsComponents) {}

  /**
   * Our record, if `address` (what we advertise now) or our domain differs
   * from the one we last announced: a new seq, signed and stored. Null when
   * nothing changed.
   */
  async ownIfChanged (address: string): Promise<SignedPeerRecord | null> {
    const { uuid, domain } = this.c.identity
    const held = await this.get(uuid)
    if (held !== undefined && held.address === address && held.domain === domain) return null
    const rec = await signRecord({ uuid, domain, address, seq: nextSeq(held?.seq ?? 0) }, this.c.identity)
    await this.store(rec)
    this.c.logger.info({ address, previous: held?.address ?? null, seq: rec.seq }, 'our advertised address changed; new signed peer record')
    return rec
  }

  /**
   * Verify a record (shape, signature by the pinned key of the peer it speaks
   * for, seq above the one we hold) and apply it. Refusals are typed errors;
   * an old or repeated record is 'stale' (forwarding sends each one around).
   */
  async accept (raw: unknown): Promise<{ outcome: RecordOutcome, record: SignedPeerRecord }> {
    const rec = checkRecord(raw)
    if (rec.uuid === this.c.identity.uuid) return { outcome: 'own', record: rec }
    const peer = this.c.peers.get(rec.uuid)
    if (peer === undefined) throw new NotFoundError(`peer record for ${rec.uuid}, which is not an admitted peer here`)
    try {
      await verifyDetached(recordBytes(rec), Buffer.from(rec.sig, 'base64'), peer.publicKey)
    } catch (err) {
      throw new BadSignatureError(`peer record for ${rec.uuid} is not signed by its key (${peer.fingerprint})`, { cause: err })
    }
    const held = await this.get(rec.uuid)
    if (held !== undefined && rec.seq <= held.seq) return { outcome: 'stale', record: rec }
    await this.store(rec)
    if (peer.address !== rec.address) await this.c.peers.setAddress(rec.uuid, rec.address)
    return { outcome: 'applied', record: rec }
  }

  async get (uuid: string): Promise<SignedPeerRecord | undefined> {
    const r = await this.c.db.selectFrom('peer_records').selectAll().where('uuid', '=', uuid).executeTakeFirst()
    return r === undefined ? undefined : { uuid: r.uuid, domain: r.domain, address: r.address, seq: Number(r.seq), sig: r.sig }
  }

  private async store (r: SignedPeerRecord): Promise<void> {
    const row = { domain: r.domain, address: r.address, seq: r.seq, sig: r.sig, updated_at: new Date() }
    await this.c.db.insertInto('peer_records').values({ uuid: r.uuid, ...row })
      .onConflict((oc) => oc.column('uuid').doUpdateSet(row).where('peer_records.seq', '<', r.seq)).execute()
  }
}
