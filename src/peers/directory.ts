import { EventEmitter } from 'node:events'
import type { Db, DbOrTx } from '../db/index.js'
import { identityKeyOf, type BundleJson } from '../crypto/bundle.js'
import type { Ratchet } from '../crypto/ratchet.js'
import { readPublicKey, type PublicKey } from '../identity/openpgp.js'

/** An admitted peer, as the dispatcher uses it. */
export interface PeerInfo {
  uuid: string
  domain: string
  address: string
  fingerprint: string
  publicArmored: string
  publicKey: PublicKey
  bundle: BundleJson
  state: 'active' | 'banned'
  sponsor: string | null
  admittedAt: Date
  lastSeen: Date | null
}

export interface AdmitInput {
  uuid: string
  domain: string
  address: string
  publicArmored: string
  bundle: BundleJson
  sponsor?: string | null
}

export interface PeerDirectoryComponents { db: Db, ratchet: Ratchet }

interface PeerDirectoryEvents { admitted: [PeerInfo], updated: [PeerInfo], address: [PeerInfo] }

/**
 * The peers this box admitted, cached in memory. Only `admit` (called after
 * our own approval or a verified add-peer-server) puts a peer here.
 */
export class PeerDirectory extends EventEmitter<PeerDirectoryEvents> {
  private readonly peers = new Map<string, PeerInfo>()
  /** peers whose link was started: admitted with announce, or announced later, or loaded at boot */
  private readonly announced = new Set<string>()

  constructor (private readonly c: PeerDirectoryComponents) { super() }

  async load (): Promise<void> {
    const rows = await this.c.db.selectFrom('peers').selectAll().execute()
    for (const r of rows) {
      const info: PeerInfo = {
        uuid: r.uuid,
        domain: r.domain,
        address: r.address,
        fingerprint: r.fingerprint,
        publicArmored: r.public_key,
        publicKey: await readPublicKey(r.public_key),
        bundle: r.signal_bundle as BundleJson,
        state: r.state,
        sponsor: r.sponsor,
        admittedAt: r.admitted_at,
        lastSeen: r.last_seen
      }
      this.peers.set(r.uuid, info)
      this.announced.add(r.uuid)
      this.c.ratchet.pin(r.uuid, r.signal_identity)
    }
  }

  get (uuid: string): PeerInfo | undefined { return this.peers.get(uuid) }
  active (uuid: string): PeerInfo | undefined {
    const p = this.peers.get(uuid)
    return p?.state === 'active' ? p : undefined
  }

  list (): PeerInfo[] { return [...this.peers.values()] }
  activeList (): PeerInfo[] { return this.list().filter((p) => p.state === 'active') }

  /**
   * Record an admitted peer. With `announce: false` the link is not started
   * yet: the sponsor waits until the newcomer has taken add-peer-server, or its
   * first frames would reach a box that does not know it yet.
   */
  async admit (input: AdmitInput, db: DbOrTx = this.c.db, opts: { announce?: boolean } = {}): Promise<PeerInfo> {
    const publicKey = await readPublicKey(input.publicArmored)
    const identity = identityKeyOf(input.bundle)
    const row = {
      uuid: input.uuid,
      domain: input.domain,
      address: input.address,
      fingerprint: publicKey.getFingerprint(),
      public_key: input.publicArmored,
      signal_identity: identity,
      signal_bundle: JSON.stringify(input.bundle),
      sponsor: input.sponsor ?? null
    }
    await db.insertInto('peers').values(row).onConflict((oc) => oc.column('uuid').doUpdateSet({
      domain: row.domain, address: row.address, fingerprint: row.fingerprint, public_key: row.public_key,
      signal_identity: row.signal_identity, signal_bundle: row.signal_bundle
    })).execute()
    await db.insertInto('peer_seq').values({ peer_uuid: input.uuid, next_out: 1, last_in: 0 }).onConflict((oc) => oc.column('peer_uuid').doNothing()).execute()
    const existing = this.peers.get(input.uuid)
    const info: PeerInfo = {
      uuid: input.uuid,
      domain: input.domain,
      address: input.address,
      fingerprint: row.fingerprint,
      publicArmored: input.publicArmored,
      publicKey,
      bundle: input.bundle,
      state: existing?.state ?? 'active',
      sponsor: row.sponsor,
      admittedAt: existing?.admittedAt ?? new Date(),
      lastSeen: existing?.lastSeen ?? null
    }
    this.peers.set(info.uuid, info)
    this.c.ratchet.pin(info.uuid, identity)
    // 'admitted' starts the link: a peer first admitted with announce: false
    // (a greeting not yet taken) and then admitted again by its own
    // add-peer-server must still get one
    if (opts.announce !== false) this.emit(this.announced.has(info.uuid) ? 'updated' : 'admitted', info)
    if (opts.announce !== false) this.announced.add(info.uuid)
    return info
  }

  /** Start talking to a peer admitted with `announce: false`. */
  announce (uuid: string): void {
    const p = this.peers.get(uuid)
    if (p === undefined) return
    this.announced.add(uuid)
    this.emit('admitted', p)
  }

  /**
   * Undo an admission that was never announced (our greeting was not taken):
   * a newcomer that never accepted us must not sit in `peer list` nor get a
   * link at the next boot. An announced peer is kept.
   */
  async forgetUnannounced (uuid: string): Promise<void> {
    if (this.announced.has(uuid) || !this.peers.has(uuid)) return
    await this.c.db.deleteFrom('peers').where('uuid', '=', uuid).execute()
    await this.c.db.deleteFrom('peer_seq').where('peer_uuid', '=', uuid).execute()
    this.peers.delete(uuid)
  }

  /** Banned here: an admitted peer we banned, or any uuid in the bans table (never admitted, or notice applied). */
  async isBanned (uuid: string): Promise<boolean> {
    if (this.peers.get(uuid)?.state === 'banned') return true
    const row = await this.c.db.selectFrom('bans').select('state').where('uuid', '=', uuid).executeTakeFirst()
    return row?.state === 'applied'
  }

  async setState (uuid: string, state: 'active' | 'banned'): Promise<void> {
    await this.c.db.updateTable('peers').set({ state }).where('uuid', '=', uuid).execute()
    const p = this.peers.get(uuid)
    if (p !== undefined) p.state = state
  }

  /** The peer moved (a verified peer record): its link dials the new address. */
  async setAddress (uuid: string, address: string): Promise<void> {
    const p = this.peers.get(uuid)
    if (p === undefined) return
    await this.c.db.updateTable('peers').set({ address }).where('uuid', '=', uuid).execute()
    p.address = address
    this.emit('address', p)
  }

  /** The peer gave us a fresh bundle (session reset); keep it for the next re-key. */
  async setBundle (uuid: string, bundle: BundleJson): Promise<void> {
    const p = this.peers.get(uuid)
    if (p === undefined) return
    p.bundle = bundle
    await this.c.db.updateTable('peers').set({ signal_bundle: JSON.stringify(bundle) }).where('uuid', '=', uuid).execute()
  }

  async touch (uuid: string): Promise<void> {
    const p = this.peers.get(uuid)
    if (p === undefined) return
    const now = new Date()
    // at most one write a minute per peer: last_seen is for humans
    if (p.lastSeen !== null && now.getTime() - p.lastSeen.getTime() < 60_000) return
    p.lastSeen = now
    await this.c.db.updateTable('peers').set({ last_seen: now }).where('uuid', '=', uuid).execute()
  }
}
