import { randomUUID, randomInt } from 'node:crypto'
import { chmod, mkdir, readFile, writeFile, rename } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import * as S from '@signalapp/libsignal-client'
import { IdentityError } from '../errors.js'
import { fingerprintOf, generateKeyPair, readPrivateKey, readPublicKey, type PrivateKey, type PublicKey } from './openpgp.js'

/** What a peer is: loaded once at boot, immutable afterwards. */
export interface Identity {
  uuid: string
  domain: string
  fingerprint: string
  publicArmored: string
  privateKey: PrivateKey
  publicKey: PublicKey
  signal: SignalIdentity
}

export interface SignalIdentity {
  registrationId: number
  identity: S.IdentityKeyPair
  signedPreKey: S.SignedPreKeyRecord
  kyberPreKey: S.KyberPreKeyRecord
}

interface SignalFile {
  registrationId: number
  identity: string
  signedPreKeyId: number
  signedPreKey: string
  kyberPreKeyId: number
  kyberPreKey: string
}

export const identityDir = (stateDir: string): string => join(stateDir, 'identity')

export function identityExists (stateDir: string): boolean {
  return existsSync(join(identityDir(stateDir), 'uuid'))
}

/** Write a file readable only by us, atomically (no half-written key after a crash). */
async function writeSecret (path: string, data: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`
  await writeFile(tmp, data, { mode: 0o600 })
  await chmod(tmp, 0o600)
  await rename(tmp, path)
}

export async function createIdentity (stateDir: string, domain: string): Promise<Identity> {
  const dir = identityDir(stateDir)
  if (identityExists(stateDir)) throw new IdentityError(`an identity already exists in ${dir}; refusing to overwrite it`)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const uuid = randomUUID()
  const { privateArmored, publicArmored } = await generateKeyPair(domain)
  await writeSecret(join(dir, 'openpgp.key'), privateArmored)
  await writeFile(join(dir, 'openpgp.pub'), publicArmored, { mode: 0o644 })
  await writeSecret(join(dir, 'signal.json'), JSON.stringify(newSignalFile()))
  await writeFile(join(dir, 'domain'), domain + '\n', { mode: 0o644 })
  // the uuid is written last: its presence marks a complete identity
  await writeFile(join(dir, 'uuid'), uuid + '\n', { mode: 0o644 })
  return await loadIdentity(stateDir)
}

function newSignalFile (): SignalFile {
  const identity = S.IdentityKeyPair.generate()
  const now = Date.now()
  const spk = S.PrivateKey.generate()
  const spkSig = identity.privateKey.sign(spk.getPublicKey().serialize())
  const kyber = S.KEMKeyPair.generate()
  const kyberSig = identity.privateKey.sign(kyber.getPublicKey().serialize())
  const signedPreKeyId = randomInt(1, 0xffffff)
  const kyberPreKeyId = randomInt(1, 0xffffff)
  return {
    registrationId: randomInt(1, 16380),
    identity: b64(identity.serialize()),
    signedPreKeyId,
    signedPreKey: b64(S.SignedPreKeyRecord.new(signedPreKeyId, now, spk.getPublicKey(), spk, spkSig).serialize()),
    kyberPreKeyId,
    kyberPreKey: b64(S.KyberPreKeyRecord.new(kyberPreKeyId, now, kyber, kyberSig).serialize())
  }
}

export async function loadIdentity (stateDir: string): Promise<Identity> {
  const dir = identityDir(stateDir)
  if (!identityExists(stateDir)) throw new IdentityError(`no identity in ${dir}; run \`centerctl init\` first`)
  try {
    const uuid = (await readFile(join(dir, 'uuid'), 'utf8')).trim()
    const domain = (await readFile(join(dir, 'domain'), 'utf8')).trim()
    const publicArmored = await readFile(join(dir, 'openpgp.pub'), 'utf8')
    const privateKey = await readPrivateKey(await readFile(join(dir, 'openpgp.key'), 'utf8'))
    const publicKey = await readPublicKey(publicArmored)
    const sf = JSON.parse(await readFile(join(dir, 'signal.json'), 'utf8')) as SignalFile
    const signal: SignalIdentity = {
      registrationId: sf.registrationId,
      identity: S.IdentityKeyPair.deserialize(unb64(sf.identity)),
      signedPreKey: S.SignedPreKeyRecord.deserialize(unb64(sf.signedPreKey)),
      kyberPreKey: S.KyberPreKeyRecord.deserialize(unb64(sf.kyberPreKey))
    }
    return { uuid, domain, fingerprint: fingerprintOf(publicKey), publicArmored, privateKey, publicKey, signal }
  } catch (err) {
    if (err instanceof IdentityError) throw err
    throw new IdentityError(`identity in ${dir} is unreadable: ${(err as Error).message}`, { cause: err })
  }
}

export const b64 = (u: Uint8Array): string => Buffer.from(u).toString('base64')
export const unb64 = (s: string): Uint8Array<ArrayBuffer> => new Uint8Array(Buffer.from(s, 'base64'))
