import { chmod, copyFile, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { BadSignatureError, SchemaError } from '../errors.js'
import { identityDir, type Identity } from './files.js'
import { fingerprintOf, generateKeyPair, readPrivateKey, readPublicKey, signText, verifyText, type PrivateKey, type PublicKey } from './openpgp.js'

/**
 * OpenPGP key rotation, the identity side: the files and the signed
 * announcement. A rotation goes in three steps so a crash never leaves a key
 * nobody was told about:
 *   1. the new pair is written next to the current one (`openpgp.key.next`),
 *   2. the caller records the announcement in the database,
 *   3. `promoteNextKey` keeps the current pair as `*.prev` and moves the new
 *      one in place. A restart finds `.next` and either finishes (step 2 was
 *      recorded) or drops it (it was not).
 */

const KEY = 'openpgp.key'
const PUB = 'openpgp.pub'

export interface NewKey { privateArmored: string, publicArmored: string, privateKey: PrivateKey, publicKey: PublicKey, fingerprint: string }

/** The data of a `key-rotation` event: the new public key, vouched for by the old key and by itself. */
export interface KeyAnnouncement {
  /** fingerprint of the key being replaced (the one receivers have pinned) */
  previous: string
  fingerprint: string
  public_key: string
  iat: number
  /** the statement signed by the previous key: it hands over to the new one */
  old_signature: string
  /** the same statement signed by the new key: whoever announces it holds it (cross-certification) */
  new_signature: string
}

export function rotationStatement (uuid: string, previous: string, fingerprint: string, iat: number): string {
  return `center key rotation\npeer ${uuid}\nfrom ${previous}\nto ${fingerprint}\nat ${iat}\n`
}

async function writeSecret (path: string, data: string): Promise<void> {
  await writeFile(path, data, { mode: 0o600 })
  await chmod(path, 0o600)
}

/** Step 1: a new pair, written as `openpgp.key.next` / `openpgp.pub.next`. */
export async function writeNextKey (stateDir: string, domain: string): Promise<NewKey> {
  const dir = identityDir(stateDir)
  const { privateArmored, publicArmored } = await generateKeyPair(domain)
  await writeSecret(join(dir, `${KEY}.next`), privateArmored)
  await writeFile(join(dir, `${PUB}.next`), publicArmored, { mode: 0o644 })
  const privateKey = await readPrivateKey(privateArmored)
  const publicKey = await readPublicKey(publicArmored)
  return { privateArmored, publicArmored, privateKey, publicKey, fingerprint: fingerprintOf(publicKey) }
}

export async function readNextKey (stateDir: string): Promise<NewKey | null> {
  const dir = identityDir(stateDir)
  if (!existsSync(join(dir, `${KEY}.next`)) || !existsSync(join(dir, `${PUB}.next`))) return null
  const privateArmored = await readFile(join(dir, `${KEY}.next`), 'utf8')
  const publicArmored = await readFile(join(dir, `${PUB}.next`), 'utf8')
  const publicKey = await readPublicKey(publicArmored)
  return { privateArmored, publicArmored, privateKey: await readPrivateKey(privateArmored), publicKey, fingerprint: fingerprintOf(publicKey) }
}

export async function dropNextKey (stateDir: string): Promise<void> {
  const dir = identityDir(stateDir)
  await rm(join(dir, `${KEY}.next`), { force: true })
  await rm(join(dir, `${PUB}.next`), { force: true })
}

/** Step 3: the current pair becomes `*.prev`, the `.next` pair the current one. Renames are atomic. */
export async function promoteNextKey (stateDir: string): Promise<void> {
  const dir = identityDir(stateDir)
  await copyFile(join(dir, KEY), join(dir, `${KEY}.prev.tmp`))
  await chmod(join(dir, `${KEY}.prev.tmp`), 0o600)
  await rename(join(dir, `${KEY}.prev.tmp`), join(dir, `${KEY}.prev`))
  await copyFile(join(dir, PUB), join(dir, `${PUB}.prev`))
  await rename(join(dir, `${PUB}.next`), join(dir, PUB))
  await rename(join(dir, `${KEY}.next`), join(dir, KEY))
}

/** The key we rotated away from, while some peer has not confirmed the new one. */
export async function readPreviousKey (stateDir: string): Promise<PrivateKey | null> {
  const path = join(identityDir(stateDir), `${KEY}.prev`)
  return existsSync(path) ? await readPrivateKey(await readFile(path, 'utf8')) : null
}

/** Every peer has the new key: the old private key has no use left. */
export async function dropPreviousKey (stateDir: string): Promise<void> {
  const dir = identityDir(stateDir)
  await rm(join(dir, `${KEY}.prev`), { force: true })
  await rm(join(dir, `${PUB}.prev`), { force: true })
}

/**
 * The running daemon's identity takes the new key. Identity is otherwise
 * fixed after boot; this is the one place it changes, so everything that
 * signs with or hands out `identity` (links, joins, whoami) follows.
 */
export function adoptKey (identity: Identity, key: Pick<NewKey, 'privateKey' | 'publicKey' | 'publicArmored' | 'fingerprint'>): void {
  identity.privateKey = key.privateKey
  identity.publicKey = key.publicKey
  identity.publicArmored = key.publicArmored
  identity.fingerprint = key.fingerprint
}

export async function announce (identity: Identity, oldKey: PrivateKey, next: NewKey, iat: number): Promise<KeyAnnouncement> {
  const statement = rotationStatement(identity.uuid, identity.fingerprint, next.fingerprint, iat)
  return {
    previous: identity.fingerprint,
    fingerprint: next.fingerprint,
    public_key: next.publicArmored,
    iat,
    old_signature: await signText(statement, oldKey),
    new_signature: await signText(statement, next.privateKey)
  }
}

/**
 * A receiver's check of an announcement from `uuid`, whose key it has pinned
 * as `pinned`: the statement is the one both signatures cover, the pinned key
 * signed it, and the new key (whose fingerprint is the one named) signed it too.
 */
export async function verifyAnnouncement (uuid: string, data: unknown, pinned: PublicKey): Promise<{ publicKey: PublicKey, publicArmored: string, fingerprint: string }> {
  const a = data as Partial<Record<keyof KeyAnnouncement, unknown>> | null
  if (typeof a !== 'object' || a === null) throw new SchemaError('key-rotation data must be an object')
  for (const k of ['previous', 'fingerprint', 'public_key', 'old_signature', 'new_signature'] as const) {
    if (typeof a[k] !== 'string' || (a[k] as string).length > 64 * 1024) throw new SchemaError(`key-rotation data.${k} must be a string`)
  }
  if (!Number.isSafeInteger(a.iat)) throw new SchemaError('key-rotation data.iat must be an integer')
  const pinnedFp = fingerprintOf(pinned)
  if (a.previous !== pinnedFp) throw new BadSignatureError(`key-rotation replaces key ${String(a.previous)}, but the key pinned for ${uuid} is ${pinnedFp}`)
  const publicKey = await readPublicKey(a.public_key as string)
  const fingerprint = fingerprintOf(publicKey)
  if (fingerprint !== a.fingerprint) throw new BadSignatureError(`key-rotation names key ${String(a.fingerprint)} but carries ${fingerprint}`)
  if (fingerprint === pinnedFp) throw new BadSignatureError('key-rotation announces the key already pinned')
  const statement = rotationStatement(uuid, pinnedFp, fingerprint, a.iat as number)
  await verifyText(statement, a.old_signature as string, pinned).catch((err) => {
    throw new BadSignatureError(`key-rotation is not signed by the pinned key of ${uuid}: ${(err as Error).message}`, { cause: err })
  })
  await verifyText(statement, a.new_signature as string, publicKey).catch((err) => {
    throw new BadSignatureError(`key-rotation's new key did not sign the hand-over (no cross-certification): ${(err as Error).message}`, { cause: err })
  })
  return { publicKey, publicArmored: a.public_key as string, fingerprint }
}
