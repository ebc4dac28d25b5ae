import * as S from '@signalapp/libsignal-client'
import { SchemaError } from '../errors.js'
import { b64, unb64, type SignalIdentity } from '../identity/files.js'

/** A Signal prekey bundle as it travels in `dh_pub_key` (all binary fields base64). */
export interface BundleJson {
  registrationId: number
  identityKey: string
  signedPreKeyId: number
  signedPreKey: string
  signedPreKeySig: string
  kyberPreKeyId: number
  kyberPreKey: string
  kyberPreKeySig: string
}

export const DEVICE_ID = 1

export function bundleOf (s: SignalIdentity): BundleJson {
  return {
    registrationId: s.registrationId,
    identityKey: b64(s.identity.publicKey.serialize()),
    signedPreKeyId: s.signedPreKey.id(),
    signedPreKey: b64(s.signedPreKey.publicKey().serialize()),
    signedPreKeySig: b64(s.signedPreKey.signature()),
    kyberPreKeyId: s.kyberPreKey.id(),
    kyberPreKey: b64(s.kyberPreKey.publicKey().serialize()),
    kyberPreKeySig: b64(s.kyberPreKey.signature())
  }
}

const B64 = /^[A-Za-z0-9+/]+={0,2}$/

/** Validate an untrusted bundle; returns it typed, or throws SchemaError naming the field. */
export function checkBundle (v: unknown): BundleJson {
  if (typeof v !== 'object' || v === null) throw new SchemaError('dh_pub_key must be an object (a Signal prekey bundle)')
  const o = v as Record<string, unknown>
  for (const k of ['registrationId', 'signedPreKeyId', 'kyberPreKeyId']) {
    if (!Number.isInteger(o[k]) || (o[k] as number) < 0 || (o[k] as number) > 0xffffffff) throw new SchemaError(`dh_pub_key.${k} must be an unsigned 32-bit integer`)
  }
  for (const k of ['identityKey', 'signedPreKey', 'signedPreKeySig', 'kyberPreKey', 'kyberPreKeySig']) {
    if (typeof o[k] !== 'string' || (o[k] as string).length > 8192 || !B64.test(o[k] as string)) throw new SchemaError(`dh_pub_key.${k} must be base64 (at most 8 KiB)`)
  }
  try {
    toPreKeyBundle(o as unknown as BundleJson)
  } catch (err) {
    throw new SchemaError(`dh_pub_key is not a valid Signal prekey bundle: ${(err as Error).message}`, { cause: err })
  }
  return o as unknown as BundleJson
}

export function toPreKeyBundle (b: BundleJson): S.PreKeyBundle {
  const identity = S.PublicKey.deserialize(unb64(b.identityKey))
  const spk = S.PublicKey.deserialize(unb64(b.signedPreKey))
  const kyber = S.KEMPublicKey.deserialize(unb64(b.kyberPreKey))
  // both prekeys must really be signed by the identity key we are about to pin
  if (!identity.verify(spk.serialize(), unb64(b.signedPreKeySig))) throw new Error('signed prekey signature is invalid')
  if (!identity.verify(kyber.serialize(), unb64(b.kyberPreKeySig))) throw new Error('kyber prekey signature is invalid')
  return S.PreKeyBundle.new(b.registrationId, DEVICE_ID, null, null, b.signedPreKeyId, spk, unb64(b.signedPreKeySig), identity, b.kyberPreKeyId, kyber, unb64(b.kyberPreKeySig))
}

export function identityKeyOf (b: BundleJson): Buffer {
  return Buffer.from(b.identityKey, 'base64')
}
