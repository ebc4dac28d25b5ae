import { sign, verify, type KeyObject } from 'node:crypto'
import type { RecordSigner } from './record.js'

export interface Ed25519SignerComponents {
  /** the local peer's private key; without it `sign` throws */
  privateKey?: KeyObject
  /** the public key of a peer by uuid, or undefined if unknown */
  publicKeyOf: (uuid: string) => KeyObject | undefined
}

/**
 * A `RecordSigner` on node:crypto Ed25519. Used by tests and the simulator;
 * the daemon plugs its OpenPGP identity into the same interface instead.
 */
export function createEd25519Signer (components: Ed25519SignerComponents): RecordSigner {
  return {
    sign (bytes) {
      if (components.privateKey === undefined) throw new Error('this signer has no private key')
      return sign(null, bytes, components.privateKey)
    },
    verify (uuid, bytes, sig) {
      const key = components.publicKeyOf(uuid)
      if (key === undefined) return false
      try {
        return verify(null, bytes, key, sig)
      } catch {
        // a malformed signature is a "no", not a crash
        return false
      }
    }
  }
}
