import * as openpgp from 'openpgp'
import { BadSignatureError, DecryptError } from '../errors.js'
import { FUTURE_SKEW_SECONDS, fastSignerFor, fastVerifierFor } from './fastsig.js'

export type PublicKey = openpgp.PublicKey
export type PrivateKey = openpgp.PrivateKey

/**
 * v4 EdDSA (curve25519Legacy) with a cv25519 encryption subkey: the key type
 * GnuPG 2.2 (Debian 12) can import and verify. RFC 9580 Ed25519 keys it cannot.
 */
export async function generateKeyPair (domain: string): Promise<{ privateArmored: string, publicArmored: string }> {
  const { privateKey, publicKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name: `center peer ${domain}`, email: `center@${domain}` }],
    format: 'armored'
  })
  return { privateArmored: privateKey, publicArmored: publicKey }
}

export async function readPrivateKey (armored: string): Promise<PrivateKey> {
  return await openpgp.readPrivateKey({ armoredKey: armored })
}

/** Parse an armored public key from an untrusted source; refuses private keys and garbage. */
export async function readPublicKey (armored: string): Promise<PublicKey> {
  if (typeof armored !== 'string' || armored.length > 64 * 1024) throw new BadSignatureError('public key must be an armored OpenPGP key under 64 KiB')
  try {
    const key = await openpgp.readKey({ armoredKey: armored })
    if (key.isPrivate()) throw new BadSignatureError('expected a public key, got a private key')
    return key as PublicKey
  } catch (err) {
    if (err instanceof BadSignatureError) throw err
    throw new BadSignatureError(`not a valid OpenPGP public key: ${(err as Error).message}`, { cause: err })
  }
}

export function fingerprintOf (key: PublicKey | PrivateKey): string {
  return key.getFingerprint()
}

/**
 * Detached binary signature over raw bytes (what `gpg --detach-sign` makes).
 * The same v4 EdDSA packet is built with node:crypto when the key allows
 * (about 10x faster than openpgp.js, which re-imports the key on every call);
 * otherwise openpgp.js does it. Both verify with GnuPG.
 */
export async function signDetached (data: Uint8Array, key: PrivateKey): Promise<Uint8Array> {
  const fast = await fastSignerFor(key)
  if (fast !== null) return fast.sign(data)
  const message = await openpgp.createMessage({ binary: data })
  return await openpgp.sign({ message, signingKeys: key, detached: true, format: 'binary' }) as Uint8Array
}

export async function verifyDetached (data: Uint8Array, signature: Uint8Array, key: PublicKey): Promise<void> {
  // null: a form the fast path does not handle (other algorithm, text mode, ...): openpgp.js decides
  const fast = (await fastVerifierFor(key)).verify(data, signature)
  if (fast === true) return
  if (fast === false) throw new BadSignatureError('signature does not verify with the key of the sender')
  try {
    const message = await openpgp.createMessage({ binary: data })
    const sig = await openpgp.readSignature({ binarySignature: signature })
    // judged as of a few minutes ahead, so a peer whose clock runs fast is not refused
    const date = new Date(Date.now() + FUTURE_SKEW_SECONDS * 1000)
    const { signatures } = await openpgp.verify({ message, signature: sig, verificationKeys: key, expectSigned: true, date })
    await signatures[0]?.verified
  } catch (err) {
    throw new BadSignatureError(`signature does not verify with the key of the sender: ${(err as Error).message}`, { cause: err })
  }
}

/** Armored detached signature over a text (the RFC 3 proof of a secret file). */
export async function signText (text: string, key: PrivateKey): Promise<string> {
  const message = await openpgp.createMessage({ text })
  return await openpgp.sign({ message, signingKeys: key, detached: true, format: 'armored' }) as string
}

export async function verifyText (text: string, armoredSignature: string, key: PublicKey): Promise<void> {
  try {
    const message = await openpgp.createMessage({ text })
    const signature = await openpgp.readSignature({ armoredSignature })
    const date = new Date(Date.now() + FUTURE_SKEW_SECONDS * 1000)
    const { signatures } = await openpgp.verify({ message, signature, verificationKeys: key, expectSigned: true, date })
    await signatures[0]?.verified
  } catch (err) {
    throw new BadSignatureError(`signature over the secret does not verify: ${(err as Error).message}`, { cause: err })
  }
}

/** OpenPGP-encrypt to the recipient and sign with our key: the RFC 3 `GPG` form. */
export async function encryptAndSign (data: Uint8Array, to: PublicKey, from: PrivateKey): Promise<Uint8Array> {
  const message = await openpgp.createMessage({ binary: data })
  return await openpgp.encrypt({ message, encryptionKeys: to, signingKeys: from, format: 'binary' }) as Uint8Array
}

export async function decryptAndVerify (data: Uint8Array, ours: PrivateKey, sender: PublicKey): Promise<Uint8Array> {
  let message: openpgp.Message<Uint8Array>
  try {
    message = await openpgp.readMessage({ binaryMessage: data })
  } catch (err) {
    throw new DecryptError(`not an OpenPGP message: ${(err as Error).message}`, { cause: err })
  }
  try {
    // a sender whose clock runs a little fast is not refused; freshness is checked on the envelope
    const date = new Date(Date.now() + FUTURE_SKEW_SECONDS * 1000)
    const { data: out } = await openpgp.decrypt({ message, decryptionKeys: ours, verificationKeys: sender, expectSigned: true, format: 'binary', date })
    return out as Uint8Array
  } catch (err) {
    const msg = (err as Error).message
    if (/signature/i.test(msg)) throw new BadSignatureError(`GPG message signature: ${msg}`, { cause: err })
    throw new DecryptError(`GPG message: ${msg}`, { cause: err })
  }
}
