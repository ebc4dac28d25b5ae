import type { Db } from '../db/index.js'
import type { Dispatcher } from '../dispatcher/index.js'
import { BadSignatureError, ConflictError, SchemaError } from '../errors.js'
import type { Identity } from '../identity/files.js'
import { loadIdentity } from '../identity/files.js'
import { readPublicKey, verifyDetached, type PrivateKey, type PublicKey } from '../identity/openpgp.js'
import { adoptKey, announce, dropNextKey, dropPreviousKey, promoteNextKey, readNextKey, readPreviousKey, verifyAnnouncement, writeNextKey, type KeyAnnouncement } from '../identity/rotate.js'
import type { Logger } from '../logger.js'
import { PEERS_SERVICE } from '../services/registry.js'
import { nowSeconds } from '../wire/envelope.js'
import type { PeerDirectory, PeerInfo } from './directory.js'

/** The one peer event of a rotation: an announcement (to all), or a receiver's confirmation (back to the sender). */
export const KEY_ROTATION_EVENT = 'key-rotation'

export interface KeyRotationInit {
  stateDir: string
  /** how long a peer's replaced key stays good on its frames: the longest an event can live (limits.max_ttl_seconds) */
  graceSeconds: number
}

export interface KeyRotationComponents {
  db: Db
  identity: Identity
  peers: PeerDirectory
  dispatcher: Dispatcher
  logger: Logger
}

/** A peer's replaced key, still accepted until `until` (seconds). */
export interface PreviousKey { publicKey: PublicKey, fingerprint: string, until: number }

const previousKeys = new WeakMap<PeerInfo, PreviousKey>()

/**
 * Check a peer's frame signature against its pinned key, then against the key
 * it rotated away from while that is in its grace period: frames it signed
 * (or had queued) before we took its new key stay good. After the grace the
 * old key is refused, with a message saying so.
 */
export async function verifyPeerSignature (peer: PeerInfo, signed: Uint8Array, signature: Uint8Array): Promise<void> {
  try {
    await verifyDetached(signed, signature, peer.publicKey)
  } catch (err) {
    const prev = previousKeys.get(peer)
    if (!(err instanceof BadSignatureError) || prev === undefined) throw err
    const ok = await verifyDetached(signed, signature, prev.publicKey).then(() => true, () => false)
    if (!ok) throw err
    if (nowSeconds() >= prev.until) throw new BadSignatureError(`signed with ${peer.uuid}'s previous key ${prev.fingerprint}, retired ${nowSeconds() - prev.until} s ago (it rotated to ${peer.fingerprint})`)
  }
}

/**
 * `centerctl key rotate` and its two ends. Sender: a new OpenPGP key,
 * announced to every active peer in a `key-rotation` event that the old key
 * signs (the frame carrying it too: frames to a peer are signed with the old
 * key until that peer confirms). Receiver: checks the announcement against
 * the pinned key, pins the new one, keeps the old one for the grace period,
 * and confirms.
 */
export class KeyRotation {
  /** our replaced key, while some peer has not confirmed the new one */
  private previous: PrivateKey | null = null
  /** peers still on our previous key */
  private readonly pending = new Set<string>()
  private started = false

  constructor (private readonly init: KeyRotationInit, private readonly c: KeyRotationComponents) {}

  /** After the peer directory is loaded: finish an interrupted rotation, reload pending peers and peers' old keys. */
  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.recover()
    const rows = await this.c.db.selectFrom('own_key_rotations').selectAll().execute()
    for (const r of rows) this.pending.add(r.peer_uuid)
    this.previous = this.pending.size > 0 ? await readPreviousKey(this.init.stateDir) : null
    if (this.pending.size > 0 && this.previous === null) {
      this.c.logger.error({ peers: [...this.pending] }, 'key rotation pending but openpgp.key.prev is gone: these peers will refuse our frames until they are re-joined')
      this.pending.clear()
    }
    await this.resubmit(rows.filter((r) => !r.submitted).map((r) => r.peer_uuid), rows[0]?.announcement)
    await this.loadPreviousKeys()
  }

  /** The key to sign frames to `peer` with. */
  signingKey (peer: string): PrivateKey {
    return this.previous !== null && this.pending.has(peer) ? this.previous : this.c.identity.privateKey
  }

  status (): Record<string, unknown> {
    return { fingerprint: this.c.identity.fingerprint, waitingFor: [...this.pending] }
  }

  // ---- sender ------------------------------------------------------------------

  async rotate (): Promise<{ previous: string, fingerprint: string, announcedTo: string[] }> {
    const waiting = [...this.pending].filter((p) => this.c.peers.active(p) !== undefined)
    if (waiting.length > 0) throw new ConflictError(`the last key rotation is not confirmed yet by ${waiting.join(', ')}; wait until \`centerctl key status\` lists no peer (or ban the peer)`)
    const id = this.c.identity
    const previous = id.fingerprint
    const oldKey = id.privateKey
    const peers = this.c.peers.activeList().map((p) => p.uuid)
    const next = await writeNextKey(this.init.stateDir, id.domain)
    const ann = await announce(id, oldKey, next, nowSeconds())
    const json = JSON.stringify(ann)
    await this.c.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('own_key_rotations').execute()
      if (peers.length > 0) await tx.insertInto('own_key_rotations').values(peers.map((p) => ({ peer_uuid: p, fingerprint: next.fingerprint, announcement: json }))).execute()
    })
    await promoteNextKey(this.init.stateDir)
    this.previous = oldKey
    this.pending.clear()
    for (const p of peers) this.pending.add(p)
    adoptKey(id, next)
    this.c.logger.warn({ previous, fingerprint: next.fingerprint, peers: peers.length }, 'OpenPGP key rotated; announcing it to every peer')
    await this.resubmit(peers, json)
    if (peers.length === 0) await dropPreviousKey(this.init.stateDir)
    return { previous, fingerprint: next.fingerprint, announcedTo: peers }
  }

  private async resubmit (peers: string[], announcement: string | undefined): Promise<void> {
    const to = peers.filter((p) => this.c.peers.active(p) !== undefined)
    if (to.length === 0 || announcement === undefined) return
    const data = JSON.parse(announcement) as KeyAnnouncement
    await this.c.dispatcher.submit(PEERS_SERVICE, to.map((p) => ({ name: KEY_ROTATION_EVENT, to: p, data })))
    await this.c.db.updateTable('own_key_rotations').set({ submitted: true }).where('peer_uuid', 'in', to).execute()
  }

  /** A rotation cut short by a crash: `.next` with its announcement recorded is finished, without it dropped. */
  private async recover (): Promise<void> {
    const next = await readNextKey(this.init.stateDir)
    if (next === null) return
    const recorded = await this.c.db.selectFrom('own_key_rotations').select('peer_uuid').where('fingerprint', '=', next.fingerprint).executeTakeFirst()
    if (recorded === undefined) {
      await dropNextKey(this.init.stateDir)
      this.c.logger.warn({ fingerprint: next.fingerprint }, 'an unfinished key rotation was never announced; dropped it')
      return
    }
    await promoteNextKey(this.init.stateDir)
    const fresh = await loadIdentity(this.init.stateDir)
    adoptKey(this.c.identity, fresh)
    this.c.logger.warn({ fingerprint: fresh.fingerprint }, 'finished a key rotation interrupted by a restart')
  }

  private async loadPreviousKeys (): Promise<void> {
    await this.c.db.deleteFrom('peer_previous_keys').where('valid_until', '<', nowSeconds() - this.init.graceSeconds).execute()
    const rows = await this.c.db.selectFrom('peer_previous_keys').selectAll().execute()
    for (const r of rows) {
      const peer = this.c.peers.get(r.peer_uuid)
      if (peer !== undefined) previousKeys.set(peer, { publicKey: await readPublicKey(r.public_key), fingerprint: r.fingerprint, until: Number(r.valid_until) })
    }
  }

  // ---- both ends: the peers service hands us the event ------------------------------

  async onEvent (from: string, data: unknown): Promise<void> {
    const d = data as Record<string, unknown> | null
    if (typeof d === 'object' && d !== null && 'confirm' in d) { await this.onConfirm(from, d.confirm); return }
    await this.onAnnouncement(from, data)
  }

  private async onAnnouncement (from: string, data: unknown): Promise<void> {
    const peer = this.c.peers.active(from)
    if (peer === undefined) return
    const fp = (data as { fingerprint?: unknown } | null)?.fingerprint
    // a repeat (the sender restarted before our confirmation reached it): confirm again
    if (typeof fp === 'string' && fp === peer.fingerprint) { await this.confirm(from, fp); return }
    const next = await verifyAnnouncement(from, data, peer.publicKey)
    const until = nowSeconds() + this.init.graceSeconds
    const old = { publicKey: peer.publicKey, publicArmored: peer.publicArmored, fingerprint: peer.fingerprint }
    await this.c.db.transaction().execute(async (tx) => {
      await tx.updateTable('peers').set({ public_key: next.publicArmored, fingerprint: next.fingerprint }).where('uuid', '=', from).execute()
      await tx.insertInto('peer_previous_keys').values({ peer_uuid: from, fingerprint: old.fingerprint, public_key: old.publicArmored, valid_until: until })
        .onConflict((oc) => oc.column('peer_uuid').doUpdateSet({ fingerprint: old.fingerprint, public_key: old.publicArmored, valid_until: until })).execute()
    })
    previousKeys.set(peer, { publicKey: old.publicKey, fingerprint: old.fingerprint, until })
    peer.publicKey = next.publicKey
    peer.publicArmored = next.publicArmored
    peer.fingerprint = next.fingerprint
    this.c.logger.warn({ peer: from, previous: old.fingerprint, fingerprint: next.fingerprint, previousGoodUntil: new Date(until * 1000) }, 'peer rotated its OpenPGP key; pinned the new one')
    await this.confirm(from, next.fingerprint)
  }

  private async confirm (to: string, fingerprint: string): Promise<void> {
    await this.c.dispatcher.submit(PEERS_SERVICE, [{ name: KEY_ROTATION_EVENT, to, data: { confirm: fingerprint } }])
  }

  private async onConfirm (from: string, fingerprint: unknown): Promise<void> {
    if (typeof fingerprint !== 'string') throw new SchemaError('key-rotation data.confirm must be a fingerprint')
    if (!this.pending.has(from)) return
    if (fingerprint !== this.c.identity.fingerprint) {
      this.c.logger.warn({ peer: from, confirmed: fingerprint, ours: this.c.identity.fingerprint }, 'a peer confirmed a key that is not our current one; still waiting')
      return
    }
    await this.c.db.deleteFrom('own_key_rotations').where('peer_uuid', '=', from).execute()
    this.pending.delete(from)
    this.c.logger.info({ peer: from, fingerprint, waitingFor: this.pending.size }, 'peer took our new OpenPGP key; signing to it with the new key')
    if (this.pending.size === 0) {
      this.previous = null
      await dropPreviousKey(this.init.stateDir)
    }
  }
}
