import * as S from '@signalapp/libsignal-client'
import { DecryptError, NoSessionError, ReplayError, UnknownPeerError } from '../errors.js'
import type { DbOrTx } from '../db/index.js'
import type { SignalIdentity } from '../identity/files.js'
import { DEVICE_ID, toPreKeyBundle, type BundleJson } from './bundle.js'
import { KeyedMutex } from './mutex.js'

export interface Ciphertext { type: 2 | 3, body: Uint8Array }

export interface RatchetComponents {
  db: DbOrTx
  signal: SignalIdentity
  localUuid: string
}

/**
 * Double Ratchet sessions, one per peer, on libsignal. Records live in the
 * `ratchet_sessions` table and in a cache; all work on one peer's session runs
 * under that peer's lock (`withPeer`), and callers save the record before any
 * frame it produced leaves the box, so a counter is never used twice.
 */
export class Ratchet {
  private readonly locks = new KeyedMutex()
  private readonly sessions = new Map<string, S.SessionRecord | null>()
  private readonly pins = new Map<string, Buffer>()
  private readonly local: S.ProtocolAddress
  private readonly idStore: IdentityStore
  private readonly sessionStore: SessionCache
  private readonly preKeys: S.PreKeyStore
  private readonly signedPreKeys: S.SignedPreKeyStore
  private readonly kyberPreKeys: S.KyberPreKeyStore

  constructor (private readonly c: RatchetComponents) {
    this.local = S.ProtocolAddress.new(c.localUuid, DEVICE_ID)
    this.idStore = new IdentityStore(c.signal, this.pins)
    this.sessionStore = new SessionCache(this.sessions)
    this.preKeys = new NoOneTimePreKeys()
    this.signedPreKeys = new OneSignedPreKey(c.signal.signedPreKey)
    this.kyberPreKeys = new LastResortKyber(c.signal.kyberPreKey)
  }

  /** Pin the Signal identity key of an admitted peer; sessions with any other key are refused. */
  pin (uuid: string, identityKey: Uint8Array): void {
    this.pins.set(uuid, Buffer.from(identityKey))
  }

  forget (uuid: string): void {
    this.pins.delete(uuid)
    this.sessions.delete(uuid)
  }

  /** Run `fn` with exclusive use of `uuid`'s session, loaded from the database first. */
  async withPeer<T> (uuid: string, fn: (s: PeerSession) => Promise<T>): Promise<T> {
    return await this.locks.run(uuid, async () => {
      if (!this.pins.has(uuid)) throw new UnknownPeerError(`no pinned identity for peer ${uuid}`)
      if (!this.sessions.has(uuid)) await this.load(uuid)
      return await fn(new PeerSession(this, uuid))
    })
  }

  private async load (uuid: string): Promise<void> {
    const row = await this.c.db.selectFrom('ratchet_sessions').select('record').where('peer_uuid', '=', uuid).executeTakeFirst()
    this.sessions.set(uuid, row === undefined ? null : S.SessionRecord.deserialize(new Uint8Array(row.record)))
  }

  /** @internal used by PeerSession */
  hasSession (uuid: string): boolean {
    const r = this.sessions.get(uuid)
    return r != null && r.hasCurrentState()
  }

  /** @internal */
  async initiate (uuid: string, bundle: BundleJson): Promise<void> {
    await S.processPreKeyBundle(toPreKeyBundle(bundle), addr(uuid), this.local, this.sessionStore, this.idStore)
  }

  /** @internal */
  async encrypt (uuid: string, plaintext: Uint8Array): Promise<Ciphertext> {
    if (!this.hasSession(uuid)) throw new NoSessionError(`no ratchet session with ${uuid}`)
    const ct = await S.signalEncrypt(toAB(plaintext), addr(uuid), this.local, this.sessionStore, this.idStore)
    return { type: ct.type() === S.CiphertextMessageType.PreKey ? 3 : 2, body: ct.serialize() }
  }

  /** @internal */
  async decrypt (uuid: string, ct: Ciphertext): Promise<Uint8Array> {
    try {
      if (ct.type === 3) {
        const m = S.PreKeySignalMessage.deserialize(toAB(ct.body))
        return await S.signalDecryptPreKey(m, addr(uuid), this.local, this.sessionStore, this.idStore, this.preKeys, this.signedPreKeys, this.kyberPreKeys)
      }
      const m = S.SignalMessage.deserialize(toAB(ct.body))
      return await S.signalDecrypt(m, addr(uuid), this.local, this.sessionStore, this.idStore)
    } catch (err) {
      throw mapError(err, uuid)
    }
  }

  /** @internal */
  async save (uuid: string, db: DbOrTx): Promise<void> {
    const rec = this.sessions.get(uuid)
    if (rec == null) {
      await db.deleteFrom('ratchet_sessions').where('peer_uuid', '=', uuid).execute()
      return
    }
    const record = Buffer.from(rec.serialize())
    await db.insertInto('ratchet_sessions').values({ peer_uuid: uuid, record, updated_at: new Date() })
      .onConflict((oc) => oc.column('peer_uuid').doUpdateSet({ record, updated_at: new Date() })).execute()
  }

  /** @internal the serialized record, or null when there is none (the next save deletes the row) */
  serialized (uuid: string): Uint8Array | null {
    const rec = this.sessions.get(uuid)
    return rec == null ? null : rec.serialize()
  }

  /** @internal */
  drop (uuid: string): void {
    this.sessions.set(uuid, null)
  }
}

/** The view of one peer's session handed out under its lock. */
export class PeerSession {
  constructor (private readonly r: Ratchet, readonly uuid: string) {}
  get established (): boolean { return this.r.hasSession(this.uuid) }
  async initiate (bundle: BundleJson): Promise<void> { await this.r.initiate(this.uuid, bundle) }
  async encrypt (pt: Uint8Array): Promise<Ciphertext> { return await this.r.encrypt(this.uuid, pt) }
  async decrypt (ct: Ciphertext): Promise<Uint8Array> { return await this.r.decrypt(this.uuid, ct) }
  /** Persist the current record (inside the caller's transaction when given one). */
  async save (db: DbOrTx): Promise<void> { await this.r.save(this.uuid, db) }
  /** The record as `save` would store it, for a caller that writes it in its own statement; null: none. */
  serialized (): Uint8Array | null { return this.r.serialized(this.uuid) }
  /** Forget the session (the peer lost its state); the next save deletes the row. */
  drop (): void { this.r.drop(this.uuid) }
}

function mapError (err: unknown, uuid: string): Error {
  const e = err as { code?: number, message?: string }
  const msg = e.message ?? String(err)
  if (e.code === S.ErrorCode.DuplicatedMessage) return new ReplayError(`frame from ${uuid} was already decrypted (replayed)`, { cause: err })
  if (/session with .* not found/.test(msg)) return new NoSessionError(`no ratchet session with ${uuid}`, { cause: err })
  return new DecryptError(`cannot decrypt frame from ${uuid}: ${msg}`, { cause: err })
}

const addr = (uuid: string): S.ProtocolAddress => S.ProtocolAddress.new(uuid, DEVICE_ID)
const toAB = (u: Uint8Array): Uint8Array<ArrayBuffer> => (u.buffer instanceof ArrayBuffer ? u as Uint8Array<ArrayBuffer> : new Uint8Array(u))

class SessionCache extends S.SessionStore {
  constructor (private readonly m: Map<string, S.SessionRecord | null>) { super() }
  async saveSession (a: S.ProtocolAddress, r: S.SessionRecord): Promise<void> { this.m.set(a.name(), r) }
  async getSession (a: S.ProtocolAddress): Promise<S.SessionRecord | null> { return this.m.get(a.name()) ?? null }
  async getExistingSessions (as: S.ProtocolAddress[]): Promise<S.SessionRecord[]> {
    return as.map((a) => this.m.get(a.name())).filter((r): r is S.SessionRecord => r != null)
  }
}

class IdentityStore extends S.IdentityKeyStore {
  constructor (private readonly s: SignalIdentity, private readonly pins: Map<string, Buffer>) { super() }
  async getIdentityKey (): Promise<S.PrivateKey> { return this.s.identity.privateKey }
  // the default re-derives the public key on every call
  override async getIdentityKeyPair (): Promise<S.IdentityKeyPair> { return this.s.identity }
  async getLocalRegistrationId (): Promise<number> { return this.s.registrationId }
  async saveIdentity (a: S.ProtocolAddress, key: S.PublicKey): Promise<S.IdentityChange> {
    const pinned = this.pins.get(a.name())
    return pinned === undefined || pinned.equals(Buffer.from(key.serialize())) ? S.IdentityChange.NewOrUnchanged : S.IdentityChange.ReplacedExisting
  }

  async isTrustedIdentity (a: S.ProtocolAddress, key: S.PublicKey): Promise<boolean> {
    const pinned = this.pins.get(a.name())
    return pinned !== undefined && pinned.equals(Buffer.from(key.serialize()))
  }

  async getIdentity (a: S.ProtocolAddress): Promise<S.PublicKey | null> {
    const pinned = this.pins.get(a.name())
    return pinned === undefined ? null : S.PublicKey.deserialize(new Uint8Array(pinned))
  }
}

class NoOneTimePreKeys extends S.PreKeyStore {
  async savePreKey (): Promise<void> {}
  async getPreKey (id: number): Promise<S.PreKeyRecord> { throw new DecryptError(`one-time prekey ${id} requested, but center bundles carry none`) }
  async removePreKey (): Promise<void> {}
}

class OneSignedPreKey extends S.SignedPreKeyStore {
  constructor (private readonly rec: S.SignedPreKeyRecord) { super() }
  async saveSignedPreKey (): Promise<void> {}
  async getSignedPreKey (id: number): Promise<S.SignedPreKeyRecord> {
    if (id !== this.rec.id()) throw new DecryptError(`unknown signed prekey ${id}`)
    return this.rec
  }
}

/** Our Kyber prekey is a last-resort key: it may be used by many sessions (re-keying). */
class LastResortKyber extends S.KyberPreKeyStore {
  constructor (private readonly rec: S.KyberPreKeyRecord) { super() }
  async saveKyberPreKey (): Promise<void> {}
  async getKyberPreKey (id: number): Promise<S.KyberPreKeyRecord> {
    if (id !== this.rec.id()) throw new DecryptError(`unknown kyber prekey ${id}`)
    return this.rec
  }

  async markKyberPreKeyUsed (): Promise<void> {}
}
