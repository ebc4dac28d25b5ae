import { randomBytes, createHash } from 'node:crypto'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { open, lstat } from 'node:fs/promises'
import { constants } from 'node:fs'
import { join as joinPath } from 'node:path'
import type { Db } from '../db/index.js'
import {
  BadRequestError, BadSecretError, BadSignatureError, DecryptError, BannedPeerError, ConflictError, NotFoundError, ReplayError,
  SchemaError, UnknownPeerError, WrongRecipientError
} from '../errors.js'
import type { Logger } from '../logger.js'
import { bundleOf, checkBundle } from '../crypto/bundle.js'
import type { Identity } from '../identity/files.js'
import { decryptAndVerify, encryptAndSign, readPublicKey, signText, verifyText } from '../identity/openpgp.js'
import { checkEnvelope, checkShape, nowSeconds, type Envelope } from '../wire/envelope.js'
import { ADDRESS, encodeGpg, encodeNew, isUuid, parseJson, type Frame } from '../wire/frame.js'
import { sendOneShot } from '../transport/oneshot.js'
import type { PeerDirectory, PeerInfo } from './directory.js'

const run = promisify(execFile)
const USERNAME = /^[a-z_][a-z0-9_-]{0,31}$/
const CONTROL_TTL = 24 * 3600

export interface JoinInit {
  clockSkewSeconds: number
  maxTtlSeconds: number
}

export interface JoinComponents {
  db: Db
  identity: Identity
  peers: PeerDirectory
  logger: Logger
  /** where other peers reach us (HOST:PORT) */
  advertise: () => string
  /** we admitted a newcomer that joined with our secret file: introduce it */
  onSponsored: (peer: PeerInfo) => Promise<void>
  /** a peer sent a verified session-reset */
  onSessionReset: (peer: string, bundle: ReturnType<typeof checkBundle>) => Promise<void>
}

export interface InviteResult { secretFile: string, path: string, admin: string, uuid: string, address: string, fingerprint: string, publicKey: string, proofsNeeded: number }

/**
 * RFC 3 "Adding New Peers" and "Joining The Network": invitations, the
 * newcomer's `new-peer-server`, the sysadmin's decision, and `add-peer-server`.
 */
export class JoinService {
  constructor (private readonly init: JoinInit, private readonly c: JoinComponents) {}

  // ---- sponsor side ---------------------------------------------------------

  /** Put a random SHA-256 value into a randomly named 0600 file owned by `admin`, in their home. */
  async invite (admin: string, proofsNeeded = 1): Promise<InviteResult> {
    if (!USERNAME.test(admin)) throw new BadRequestError(`user name ${JSON.stringify(admin)} is not a valid POSIX user name`)
    if (!Number.isInteger(proofsNeeded) || proofsNeeded < 1 || proofsNeeded > 10) throw new BadRequestError('proofs must be an integer from 1 to 10')
    const user = await lookupUser(admin)
    const secret = createHash('sha256').update(randomBytes(32)).digest('hex')
    const secretFile = `.center-invite-${randomBytes(6).toString('hex')}`
    const path = joinPath(user.home, secretFile)
    await writeOwnedFile(path, secret + '\n', user)
    await this.c.db.insertInto('invites').values({ secret_file: secretFile, admin, secret, proofs_needed: proofsNeeded }).execute()
    this.c.logger.info({ admin, secretFile }, 'invitation written')
    const id = this.c.identity
    return { secretFile, path, admin, uuid: id.uuid, address: this.c.advertise(), fingerprint: id.fingerprint, publicKey: id.publicArmored, proofsNeeded }
  }

  /** A `NEW` frame: check the proof of the secret and queue the request for the sysadmin. */
  async handleNew (raw: unknown, remote: string): Promise<{ state: string, proofs: number, proofsNeeded: number }> {
    const env = checkShape(raw)
    if (env.name !== 'new-peer-server') throw new SchemaError(`a NEW frame must carry new-peer-server, not ${env.name}`)
    this.checkControl(env, env.meta.from)
    const d = checkNewData(env.data)
    const invite = await this.c.db.selectFrom('invites').selectAll().where('secret_file', '=', d.secret_file).executeTakeFirst()
    if (invite === undefined) throw new BadSecretError(`no invitation with secret file ${JSON.stringify(d.secret_file)}`)
    if (invite.admin !== d.admin) throw new BadSecretError(`invitation ${d.secret_file} was not made for ${d.admin}`)
    if (invite.used_by !== null && invite.used_by !== env.meta.from) throw new BadSecretError(`invitation ${d.secret_file} was already used by another peer`)
    const key = await readPublicKey(d.gpg_pub_key)
    try {
      await verifyText(invite.secret, d.signature, key)
    } catch (err) {
      throw new BadSecretError(`the signature over secret file ${d.secret_file} does not match (wrong secret or wrong key)`, { cause: err })
    }
    const bundle = checkBundle(d.dh_pub_key)
    return await this.queueRequest(env, d, key.getFingerprint(), bundle, invite.proofs_needed, remote)
  }

  private async queueRequest (env: Envelope, d: NewData, fingerprint: string, bundle: object, needed: number, remote: string): Promise<{ state: string, proofs: number, proofsNeeded: number }> {
    const uuid = env.meta.from
    if (await this.c.peers.isBanned(uuid)) throw new BannedPeerError(`peer ${uuid} is banned here`)
    return await this.c.db.transaction().execute(async (tx) => {
      const prev = await tx.selectFrom('join_requests').selectAll().where('uuid', '=', uuid).forUpdate().executeTakeFirst()
      if (prev !== undefined && prev.fingerprint !== fingerprint) throw new ConflictError(`peer ${uuid} already asked to join with a different key`)
      const proofs = [...new Set([...(prev?.proofs ?? []), d.secret_file])]
      const proofsNeeded = Math.max(prev?.proofs_needed ?? 1, needed)
      const state = prev?.state === 'approved' ? 'approved' : 'pending'
      const row = { domain: d.server, address: d.address, admin: d.admin, public_key: d.gpg_pub_key, fingerprint, signal_bundle: JSON.stringify(bundle), proofs, proofs_needed: proofsNeeded, state: state as 'pending' | 'approved', updated_at: new Date() }
      await tx.insertInto('join_requests').values({ uuid, ...row }).onConflict((oc) => oc.column('uuid').doUpdateSet(row)).execute()
      await tx.updateTable('invites').set({ used_by: uuid }).where('secret_file', '=', d.secret_file).execute()
      this.c.logger.info({ peer: uuid, domain: d.server, remote, proofs: proofs.length, proofsNeeded }, 'join request queued')
      return { state, proofs: proofs.length, proofsNeeded }
    })
  }

  async requests (): Promise<Array<Record<string, unknown>>> {
    const rows = await this.c.db.selectFrom('join_requests').selectAll().orderBy('created_at').execute()
    return rows.map((r) => ({ uuid: r.uuid, domain: r.domain, address: r.address, admin: r.admin, fingerprint: r.fingerprint, proofs: r.proofs.length, proofsNeeded: r.proofs_needed, introducedBy: r.introduced_by, state: r.state, createdAt: r.created_at }))
  }


  /** Admit the newcomer and tell it with a signed, encrypted add-peer-server. Safe to repeat. */
  async approve (uuid: string): Promise<{ uuid: string, delivered: boolean, error?: string }> {
    const req = await this.c.db.selectFrom('join_requests').selectAll().where('uuid', '=', uuid).executeTakeFirst()
    if (req === undefined) throw new NotFoundError(`no join request from ${uuid}`)
    if (req.state === 'rejected') throw new ConflictError(`the join request from ${uuid} was rejected`)
    if (await this.c.peers.isBanned(uuid)) throw new BannedPeerError(`peer ${uuid} is banned here`)
    if (req.proofs.length < req.proofs_needed) {
      throw new ConflictError(`${uuid} proved ${req.proofs.length} of ${req.proofs_needed} secret files: invite ${req.admin} again and ask them to join with the new file`)
    }
    const bundle = checkBundle(req.signal_bundle)
    await this.c.db.transaction().execute(async (tx) => {
      await this.c.peers.admit({ uuid, domain: req.domain, address: req.address, publicArmored: req.public_key, bundle, sponsor: req.introduced_by }, tx, { announce: false })
      await tx.updateTable('join_requests').set({ state: 'approved', updated_at: new Date() }).where('uuid', '=', uuid).execute()
    })
    this.c.logger.info({ peer: uuid, domain: req.domain }, 'peer approved')
    try {
      await this.sendAddPeerServer(uuid, req.address)
      this.c.peers.announce(uuid)
      const info = this.c.peers.get(uuid)
      // a box that joined with our secret file is ours to introduce; an introduced one is not
      if (req.introduced_by === null && info !== undefined) await this.c.onSponsored(info)
      return { uuid, delivered: true }
    } catch (err) {
      return { uuid, delivered: false, error: `${(err as Error).message}; run approve again once it is reachable` }
    }
  }

  private async sendAddPeerServer (uuid: string, address: string): Promise<void> {
    const peer = this.c.peers.get(uuid)
    if (peer === undefined) throw new UnknownPeerError(`peer ${uuid} is not admitted`)
    const id = this.c.identity
    const env = this.envelope('add-peer-server', uuid, { dh_pub_key: bundleOf(id.signal), server: id.domain, address: this.c.advertise(), gpg_pub_key: id.publicArmored, nonce: randomBytes(16).toString('hex') })
    const body = await encryptAndSign(Buffer.from(JSON.stringify(env)), peer.publicKey, id.privateKey)
    await sendOneShot(address, encodeGpg({ v: 1, from: id.uuid, to: uuid }, body))
  }

  /** Greet a newcomer another peer introduced: admit it and send add-peer-server. */
  async greet (p: { uuid: string, domain: string, address: string, publicArmored: string, bundle: ReturnType<typeof checkBundle>, sponsor: string }): Promise<void> {
    const known = this.c.peers.get(p.uuid) !== undefined
    await this.c.peers.admit(p, this.c.db, { announce: false })
    try {
      await this.sendAddPeerServer(p.uuid, p.address)
    } catch (err) {
      if (!known) await this.c.peers.forgetUnannounced(p.uuid)
      throw err
    }
    this.c.peers.announce(p.uuid)
  }

  async reject (uuid: string): Promise<void> {
    const res = await this.c.db.updateTable('join_requests').set({ state: 'rejected', updated_at: new Date() }).where('uuid', '=', uuid).where('state', '=', 'pending').executeTakeFirst()
    if (Number(res.numUpdatedRows) === 0) throw new NotFoundError(`no pending join request from ${uuid}`)
    this.c.logger.info({ peer: uuid }, 'join request rejected')
  }

  // ---- newcomer side --------------------------------------------------------

  /** Send `new-peer-server` to an existing peer, proving the secret from its invitation. */
  async join (p: { peer: string, uuid: string, publicKey: string, admin: string, secretFile: string, secret: string }): Promise<unknown> {
    if (!ADDRESS.test(p.peer)) throw new BadRequestError(`--peer must be HOST:PORT, got ${JSON.stringify(p.peer)}`)
    if (!isUuid(p.uuid)) throw new BadRequestError('--uuid must be a lowercase UUID')
    if (!USERNAME.test(p.admin)) throw new BadRequestError('--admin must be a POSIX user name')
    if (!/^\.?[A-Za-z0-9._-]{1,128}$/.test(p.secretFile)) throw new BadRequestError('--secret-file must be a plain file name')
    const secret = p.secret.trim()
    if (!/^[0-9a-f]{64}$/.test(secret)) throw new BadRequestError('--secret must be the 64 hex digits from the secret file')
    const key = await readPublicKey(p.publicKey)
    const id = this.c.identity
    await this.c.db.insertInto('join_attempts').values({ peer_uuid: p.uuid, address: p.peer, public_key: p.publicKey })
      .onConflict((oc) => oc.column('peer_uuid').doUpdateSet({ address: p.peer, public_key: p.publicKey })).execute()
    const env = this.envelope('new-peer-server', p.uuid, {
      admin: p.admin,
      server: id.domain,
      address: this.c.advertise(),
      secret_file: p.secretFile,
      dh_pub_key: bundleOf(id.signal),
      gpg_pub_key: id.publicArmored,
      signature: await signText(secret, id.privateKey)
    })
    const reply = await sendOneShot(p.peer, encodeNew(env))
    this.c.logger.info({ peer: p.uuid, address: p.peer, fingerprint: key.getFingerprint() }, 'join request sent')
    return reply
  }

  // ---- GPG control frames ---------------------------------------------------

  /** A `GPG` frame: OpenPGP-encrypted to us and signed by the sender. */
  async handleGpg (frame: Extract<Frame, { kind: 'gpg' }>): Promise<unknown> {
    const from = frame.header.from
    if (frame.header.to !== this.c.identity.uuid) throw new WrongRecipientError(`GPG frame for ${frame.header.to}, not this peer`)
    const key = await this.senderKey(from)
    const plain = await decryptAndVerify(frame.body, this.c.identity.privateKey, key).catch((err) => {
      // signed, but not by the key of the peer it claims to be: a forgery, not a decryption problem
      if (err instanceof DecryptError && /signing key/i.test(err.message)) throw new BadSignatureError(`GPG frame from ${from} is not signed by its key: ${err.message}`, { cause: err })
      throw err
    })
    const env = this.checkControl(parseJson(plain, 'GPG message'), from)
    const data = env.data as Record<string, unknown>
    await this.useNonce(data?.nonce, env.meta.exp)
    if (env.name === 'add-peer-server') return await this.onAddPeerServer(env, data)
    if (env.name === 'session-reset') {
      if (this.c.peers.active(from) === undefined) throw new UnknownPeerError(`session-reset from ${from}, which is not an admitted peer`)
      await this.c.onSessionReset(from, checkBundle(data.dh_pub_key))
      return { reset: true }
    }
    throw new SchemaError(`GPG frames carry add-peer-server or session-reset, not ${env.name}`)
  }

  private async senderKey (from: string): Promise<Awaited<ReturnType<typeof readPublicKey>>> {
    const peer = this.c.peers.get(from)
    if (await this.c.peers.isBanned(from)) throw new BannedPeerError(`peer ${from} is banned here`)
    if (peer !== undefined) return peer.publicKey
    const attempt = await this.c.db.selectFrom('join_attempts').select('public_key').where('peer_uuid', '=', from).executeTakeFirst()
    if (attempt !== undefined) return await readPublicKey(attempt.public_key)
    const cand = await this.heardOf(from)
    if (cand === undefined) throw new UnknownPeerError(`GPG frame from ${from}, which is neither a peer nor one we asked to join`)
    return await readPublicKey(cand.public_key)
  }

  /**
   * A peer our sponsor's peer table told us about, or one we are greeting
   * ourselves (two sponsors can introduce the pair both ways at once): it may
   * greet us.
   */
  private async heardOf (uuid: string): Promise<{ public_key: string, address: string, introduced_by: string } | undefined> {
    return await this.c.db.selectFrom('peer_candidates').select(['public_key', 'address', 'introduced_by'])
      .where('uuid', '=', uuid).where('state', 'in', ['heard', 'greeting']).executeTakeFirst()
  }

  private async onAddPeerServer (env: Envelope, data: Record<string, unknown>): Promise<unknown> {
    const from = env.meta.from
    const attempt = await this.c.db.selectFrom('join_attempts').selectAll().where('peer_uuid', '=', from).executeTakeFirst()
    const known = this.c.peers.get(from)
    const heard = attempt === undefined && known === undefined ? await this.heardOf(from) : undefined
    if (attempt === undefined && known === undefined && heard === undefined) throw new UnknownPeerError(`add-peer-server from ${from}, which we never asked to join`)
    const bundle = checkBundle(data.dh_pub_key)
    const domain = typeof data.server === 'string' && /^[A-Za-z0-9.-]{1,253}$/.test(data.server) ? data.server : from
    const address = attempt?.address ?? heard?.address ?? (typeof data.address === 'string' && ADDRESS.test(data.address) ? data.address : known?.address)
    if (address === undefined) throw new SchemaError('add-peer-server.address must be HOST:PORT')
    const publicArmored = attempt?.public_key ?? heard?.public_key ?? known?.publicArmored ?? ''
    await this.c.db.transaction().execute(async (tx) => {
      await this.c.peers.admit({ uuid: from, domain, address, publicArmored, bundle, sponsor: heard?.introduced_by ?? known?.sponsor ?? null }, tx)
      await tx.updateTable('join_attempts').set({ state: 'accepted' }).where('peer_uuid', '=', from).execute()
      await tx.updateTable('peer_candidates').set({ state: 'greeted' }).where('uuid', '=', from).execute()
    })
    this.c.logger.info({ peer: from, domain }, 'admitted by add-peer-server')
    return { admitted: true }
  }

  /** The envelope checks every event gets, for one recipient only: control messages are never broadcast. */
  private checkControl (raw: unknown, from: string): Envelope {
    return checkEnvelope(raw, { sender: from, self: this.c.identity.uuid, now: nowSeconds(), broadcast: false }, this.init)
  }

  /** Control messages carry a nonce; a replayed one is refused until it expires. */
  private async useNonce (nonce: unknown, exp: number): Promise<void> {
    if (typeof nonce !== 'string' || !/^[0-9a-f]{32}$/.test(nonce)) throw new SchemaError('data.nonce must be 32 hex digits')
    const res = await this.c.db.insertInto('seen_nonces').values({ nonce, exp }).onConflict((oc) => oc.doNothing()).returning('nonce').execute()
    if (res.length === 0) throw new ReplayError('this control message was already received')
  }

  private envelope (name: string, to: string, data: unknown): Envelope {
    const iat = nowSeconds()
    return { name, meta: { from: this.c.identity.uuid, to, iat, exp: iat + CONTROL_TTL }, data }
  }
}

interface NewData { admin: string, server: string, address: string, secret_file: string, dh_pub_key: unknown, gpg_pub_key: string, signature: string }

function checkNewData (v: unknown): NewData {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SchemaError('new-peer-server data must be an object')
  const d = v as Record<string, unknown>
  const str = (k: string, re: RegExp, what: string): void => {
    if (typeof d[k] !== 'string' || !re.test(d[k] as string)) throw new SchemaError(`new-peer-server data.${k} must be ${what}`)
  }
  str('admin', USERNAME, 'a POSIX user name')
  str('server', /^[A-Za-z0-9.-]{1,253}$/, 'a domain name')
  str('address', ADDRESS, 'HOST:PORT')
  str('secret_file', /^\.?[A-Za-z0-9._-]{1,128}$/, 'a plain file name')
  str('gpg_pub_key', /^-----BEGIN PGP PUBLIC KEY BLOCK-----[\s\S]{1,65536}$/, 'an armored OpenPGP public key')
  str('signature', /^-----BEGIN PGP SIGNATURE-----[\s\S]{1,8192}$/, 'an armored OpenPGP signature')
  return d as unknown as NewData
}

interface PosixUser { name: string, uid: number, gid: number, home: string }

async function lookupUser (name: string): Promise<PosixUser> {
  let out: string
  try {
    out = (await run('getent', ['passwd', name])).stdout
  } catch {
    throw new NotFoundError(`no user ${name} on this box (getent passwd found nothing)`)
  }
  const f = out.trim().split(':')
  if (f.length < 7 || f[0] !== name) throw new NotFoundError(`no user ${name} on this box`)
  return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] as string }
}

/**
 * Create the file without following a symlink a user may have planted, and
 * only inside a real home directory that the user owns.
 */
async function writeOwnedFile (path: string, text: string, user: PosixUser): Promise<void> {
  const st = await lstat(user.home).catch(() => null)
  if (st === null || !st.isDirectory() || st.uid !== user.uid) throw new BadRequestError(`home ${user.home} of ${user.name} is not a directory owned by them`)
  const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
  try {
    await fh.writeFile(text)
    await fh.chown(user.uid, user.gid)
    await fh.chmod(0o600)
  } finally {
    await fh.close()
  }
}
