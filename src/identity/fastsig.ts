import { createHash, createPrivateKey, createPublicKey, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto'
import type * as openpgp from 'openpgp'

/** How far a signature's creation time may be ahead of our clock (another box's clock). */
export const FUTURE_SKEW_SECONDS = 300

/**
 * Fast path for the detached signature on every frame: OpenPGP v4 signature
 * packets (RFC 4880 §5.2.3, RFC 9580 §5.2.3) made and checked with
 * node:crypto Ed25519 instead of openpgp.js, which re-imports the key through
 * WebCrypto on every operation (~700 µs against ~50–140 µs native).
 *
 * Only the key type we generate is handled: a v4 EdDSA-legacy primary key
 * (algorithm 22, curve Ed25519, OID 1.3.6.1.4.1.11591.15.1). The signatures
 * are ordinary OpenPGP: GnuPG 2.2 and openpgp.js verify them, and the
 * verifier accepts what `gpg --detach-sign` and openpgp.js make.
 *
 * Signatures use SHA-512, as openpgp.js does for these keys (its default and
 * the first preference in the keys it generates), so the signatures look
 * as they did before. GnuPG 2.2 verifies SHA-512 and SHA-256 EdDSA signatures
 * alike (its own `--detach-sign` picks SHA-256 for these keys); both are at
 * least the 256 bits EdDSA over Ed25519 needs. SHA-256 would save ~1.7 µs per
 * 4 KiB on this CPU (SHA-NI): nothing next to the ~50 µs of Ed25519.
 *
 * The verifier answers `null` for any signature it does not handle, so the
 * caller falls back to openpgp.js (`verifyDetached`), which decides.
 */

export interface FastSigner {
  /** Binary detached signature packet (what `gpg --detach-sign` writes) over `data`. */
  sign: (data: Uint8Array) => Uint8Array
}

export interface FastVerifier {
  /**
   * true: a good signature by this key; false: it is not (bad signature,
   * other key, expired, malformed); null: a form this fast path does not
   * handle, ask openpgp.js. Never throws.
   */
  verify: (data: Uint8Array, signature: Uint8Array) => boolean | null
}

export interface FastVerifierOptions {
  /**
   * Unix seconds: signatures created before this are answered null (the
   * openpgp.js path checks the key's validity at that older date itself).
   */
  validFrom?: number
  /** Unix seconds: signatures created at or after this (the key's expiry) are answered null. */
  validUntil?: number
}

const SIG_TAG = 2
const ALGO_EDDSA_LEGACY = 22
const SIG_BINARY = 0x00
const SUB_CREATED = 2
const SUB_EXPIRES = 3
const SUB_REVOCATION_KEY = 12
const SUB_ISSUER = 16
const SUB_NOTATION = 20
const SUB_ISSUER_FPR = 33
/** OpenPGP hash id → node:crypto name; the ones long enough for Ed25519. */
const HASHES: ReadonlyMap<number, string> = new Map([[8, 'sha256'], [9, 'sha384'], [10, 'sha512']])
const SIGN_HASH_ID = 10
const SIGN_HASH = 'sha512'
const ED25519_LEGACY_OID = Uint8Array.from([0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01])
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/** Not a key this fast path handles (the caller keeps using openpgp.js). */
export class FastSigUnsupportedError extends Error {
  override name = 'FastSigUnsupportedError'
}

interface Ed25519LegacyKey { q: Uint8Array, fpr: Uint8Array, keyID: Uint8Array, created: number }

/** The Ed25519 public point, fingerprint and key id of a v4 EdDSA-legacy primary key, or a reason it is not one. */
function ed25519LegacyKey (key: openpgp.PublicKey | openpgp.PrivateKey): Ed25519LegacyKey | string {
  const kp = key.keyPacket
  if (kp.version !== 4) return `key packet version ${kp.version}, not 4`
  if ((kp.algorithm as number) !== ALGO_EDDSA_LEGACY) return `public key algorithm ${kp.algorithm as number}, not EdDSA legacy (22)`
  const params = kp.publicParams as { oid?: { oid?: unknown }, Q?: unknown }
  const oid = params.oid?.oid
  if (!(oid instanceof Uint8Array) || !bytesEqual(oid, ED25519_LEGACY_OID)) return 'curve is not Ed25519'
  const Q = params.Q
  if (!(Q instanceof Uint8Array) || Q.length !== 33 || Q[0] !== 0x40) return 'public point is not 0x40 ‖ 32 bytes'
  const fpr = kp.getFingerprintBytes()
  if (fpr === null || fpr.length !== 20) return 'no v4 fingerprint'
  return { q: Q.subarray(1), fpr: Uint8Array.from(fpr), keyID: Uint8Array.from(fpr.subarray(12)), created: Math.floor(kp.created.getTime() / 1000) }
}

/** Big-endian unsigned 32-bit integer at `at` (the caller checks the bounds). */
function u32 (b: Uint8Array, at: number): number {
  return ((b[at] as number) * 0x1000000) + ((b[at + 1] as number) << 16) + ((b[at + 2] as number) << 8) + (b[at + 3] as number)
}

function bytesEqual (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** RFC 4880 §3.2 MPI of an unsigned big-endian octet string: bit count, then the octets without leading zeros. */
function mpi (bytes: Uint8Array): Uint8Array {
  let i = 0
  while (i < bytes.length && bytes[i] === 0) i++
  const v = bytes.subarray(i)
  const bits = v.length === 0 ? 0 : (v.length - 1) * 8 + (32 - Math.clz32(v[0] as number))
  const out = new Uint8Array(2 + v.length)
  out[0] = bits >> 8
  out[1] = bits & 0xff
  out.set(v, 2)
  return out
}

/**
 * A signer for a decrypted v4 EdDSA-legacy private key; the node:crypto key
 * is built once. Throws FastSigUnsupportedError for any other key. It signs
 * with the primary key: openpgp.js would pick a signing subkey if the key had
 * one (`fastSignerFor` checks that it does not).
 */
export function createFastSigner (privateKey: openpgp.PrivateKey): FastSigner {
  const k = ed25519LegacyKey(privateKey)
  if (typeof k === 'string') throw new FastSigUnsupportedError(k)
  if (!privateKey.isDecrypted()) throw new FastSigUnsupportedError('the private key is encrypted')
  const seed = ((privateKey.keyPacket as openpgp.SecretKeyPacket).privateParams as { seed?: unknown } | null)?.seed
  if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new FastSigUnsupportedError('no 32-byte Ed25519 seed in the secret key packet')
  const secret = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' })
  // the seed must give the public point of the key, or we would sign with another key
  const spki = createPublicKey(secret).export({ format: 'der', type: 'spki' })
  if (!bytesEqual(spki.subarray(SPKI_ED25519_PREFIX.length), k.q)) throw new FastSigUnsupportedError('the secret seed does not match the public key')

  // hashed subpackets: creation time (filled per signature), issuer fingerprint (v4)
  const hashedLen = 6 + 23
  const head = new Uint8Array(6 + hashedLen)
  head.set([4, SIG_BINARY, ALGO_EDDSA_LEGACY, SIGN_HASH_ID, hashedLen >> 8, hashedLen & 0xff])
  head.set([5, SUB_CREATED, 0, 0, 0, 0], 6)
  head.set([22, SUB_ISSUER_FPR, 4], 12)
  head.set(k.fpr, 15)
  const trailer = Uint8Array.from([4, 0xff, 0, 0, (head.length >> 8) & 0xff, head.length & 0xff])
  // unhashed: issuer key id
  const unhashed = new Uint8Array(2 + 10)
  unhashed.set([0, 10, 9, SUB_ISSUER])
  unhashed.set(k.keyID, 4)

  return {
    sign (data: Uint8Array): Uint8Array {
      const now = Math.floor(Date.now() / 1000)
      head[8] = (now >>> 24) & 0xff
      head[9] = (now >>> 16) & 0xff
      head[10] = (now >>> 8) & 0xff
      head[11] = now & 0xff
      const digest = createHash(SIGN_HASH).update(data).update(head).update(trailer).digest()
      const sig = edSign(null, digest, secret)
      const r = mpi(sig.subarray(0, 32))
      const s = mpi(sig.subarray(32, 64))
      const bodyLen = head.length + unhashed.length + 2 + r.length + s.length
      // new-format packet header, tag 2; the body is ~117 bytes, always < 192
      const out = new Uint8Array(2 + bodyLen)
      out[0] = 0xc0 | SIG_TAG
      out[1] = bodyLen
      let p = 2
      out.set(head, p)
      p += head.length
      out.set(unhashed, p)
      p += unhashed.length
      out[p++] = digest[0] as number
      out[p++] = digest[1] as number
      out.set(r, p)
      p += r.length
      out.set(s, p)
      return out
    }
  }
}

interface Subpackets { created?: number, expires?: number, keyIDs: Uint8Array[], fprs: Uint8Array[], duplicate: boolean }

/**
 * Reads the subpacket area [from, to) of `b` into `acc`. undefined: read;
 * false: malformed; null: holds something only openpgp.js should judge.
 */
function readSubpackets (b: Uint8Array, from: number, to: number, hashed: boolean, acc: Subpackets): false | null | undefined {
  let i = from
  while (i < to) {
    // subpacket length (RFC 9580 §5.2.3.7): 1, 2 or 5 octets
    const l0 = b[i] as number
    const lenOctets = l0 < 192 ? 1 : l0 < 255 ? 2 : 5
    if (i + lenOctets > to) return false
    const len = lenOctets === 1 ? l0 : lenOctets === 2 ? ((l0 - 192) << 8) + (b[i + 1] as number) + 192 : u32(b, i + 1)
    i += lenOctets
    if (len < 1 || i + len > to) return false
    const critical = ((b[i] as number) & 0x80) !== 0
    const type = (b[i] as number) & 0x7f
    const body = b.subarray(i + 1, i + len)
    i += len
    switch (type) {
      case SUB_ISSUER:
        if (body.length !== 8) return false
        acc.keyIDs.push(body)
        break
      case SUB_ISSUER_FPR:
        if (body.length < 1 || body[0] !== 4) return null // a v5/v6 issuer: not our key type
        if (body.length !== 21) return false
        acc.fprs.push(body.subarray(1))
        break
      case SUB_CREATED:
      case SUB_EXPIRES:
        if (!hashed) break // ignored outside the hashed area (as openpgp.js and GnuPG do)
        if (body.length !== 4) return false
        {
          const v = u32(body, 0)
          if (type === SUB_CREATED) {
            if (acc.created !== undefined) acc.duplicate = true
            acc.created = v
          } else {
            if (acc.expires !== undefined) acc.duplicate = true
            acc.expires = v
          }
        }
        break
      case SUB_REVOCATION_KEY:
        if (hashed) return null // openpgp.js refuses these; let it say so
        break
      case SUB_NOTATION:
      default:
        // openpgp.js ignores what it does not know unless it is critical (and
        // every critical notation is unknown to it by default); so does GnuPG
        if (critical) return null
    }
  }
  return i === to ? undefined : false
}

/**
 * A verifier for signatures by a v4 EdDSA-legacy primary key, with the
 * node:crypto public key built once. For any other key it answers null to
 * everything. It does not look at the key's self-signatures, revocations or
 * expiry: give `validFrom`/`validUntil` (what `fastVerifierFor` does) or check
 * the key yourself.
 */
export function createFastVerifier (publicKey: openpgp.PublicKey, opts: FastVerifierOptions = {}): FastVerifier {
  const parsed = ed25519LegacyKey(publicKey)
  if (typeof parsed === 'string') return { verify: () => null }
  const k: Ed25519LegacyKey = parsed
  const pub = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, k.q]), format: 'der', type: 'spki' })
  const subkeyIDs = publicKey.getSubkeys().map((s) => s.getKeyID().toHex())
  const validFrom = Math.max(k.created, opts.validFrom ?? 0)
  const validUntil = opts.validUntil ?? Infinity

  /** null: nothing names an issuer; true: all issuer subpackets name our primary key; false: some name another. */
  function issuerIsUs (acc: Subpackets): boolean | null {
    if (acc.keyIDs.length === 0 && acc.fprs.length === 0) return null
    for (const id of acc.keyIDs) if (!bytesEqual(id, k.keyID)) return false
    for (const f of acc.fprs) if (!bytesEqual(f, k.fpr)) return false
    return true
  }
  function namesOurSubkey (acc: Subpackets): boolean {
    const ids = [...acc.keyIDs, ...acc.fprs.map((f) => f.subarray(12))].map((id) => Buffer.from(id).toString('hex'))
    return ids.some((id) => subkeyIDs.includes(id))
  }

  function check (data: Uint8Array, b: Uint8Array, pubKey: KeyObject): boolean | null {
    if (!(data instanceof Uint8Array) || !(b instanceof Uint8Array) || b.length < 2) return false
    // packet header (RFC 9580 §4.2): new or old format
    const ctb = b[0] as number
    if ((ctb & 0x80) === 0) return null // not binary OpenPGP (armored?): openpgp.js decides
    let tag: number
    let len: number
    let p: number
    if ((ctb & 0x40) !== 0) {
      tag = ctb & 0x3f
      const l0 = b[1] as number
      if (l0 >= 224 && l0 < 255) return null // partial body length
      p = l0 < 192 ? 2 : l0 < 224 ? 3 : 6
      if (b.length < p) return false
      len = p === 2 ? l0 : p === 3 ? ((l0 - 192) << 8) + (b[2] as number) + 192 : u32(b, 2)
    } else {
      tag = (ctb >> 2) & 0x0f
      const lt = ctb & 3
      if (lt === 3) return null // indeterminate length
      const n = 1 << lt
      if (b.length < 1 + n) return false
      len = 0
      for (let i = 0; i < n; i++) len = len * 256 + (b[1 + i] as number)
      p = 1 + n
    }
    if (tag !== SIG_TAG) return null // marker packet, several packets, …
    const end = p + len
    if (end > b.length) return false // truncated
    if (end < b.length) return null // more packets after it (several signatures?)

    // signature packet body (RFC 9580 §5.2.3)
    if (len < 6) return false
    const start = p
    if (b[p] !== 4) return null // v3, v5, v6
    if (b[p + 1] !== SIG_BINARY) return null // text mode (0x01) and others
    if (b[p + 2] !== ALGO_EDDSA_LEGACY) return null
    const hashName = HASHES.get(b[p + 3] as number)
    if (hashName === undefined) return null
    const hashedLen = ((b[p + 4] as number) << 8) + (b[p + 5] as number)
    p += 6
    if (p + hashedLen + 2 > end) return false
    const acc: Subpackets = { keyIDs: [], fprs: [], duplicate: false }
    let v = readSubpackets(b, p, p + hashedLen, true, acc)
    if (v !== undefined) return v
    p += hashedLen
    const hashedEnd = p
    const unhashedLen = ((b[p] as number) << 8) + (b[p + 1] as number)
    p += 2
    if (p + unhashedLen > end) return false
    v = readSubpackets(b, p, p + unhashedLen, false, acc)
    if (v !== undefined) return v
    p += unhashedLen
    if (p + 2 > end) return false
    const left0 = b[p] as number
    const left1 = b[p + 1] as number
    p += 2
    const sig = new Uint8Array(64)
    for (let m = 0; m < 2; m++) {
      if (p + 2 > end) return false
      const bytes = ((((b[p] as number) << 8) + (b[p + 1] as number)) + 7) >> 3
      p += 2
      if (bytes > 32 || p + bytes > end) return false
      sig.set(b.subarray(p, p + bytes), m * 32 + 32 - bytes)
      p += bytes
    }
    if (p !== end) return null // trailing octets in the packet

    // who and when
    if (acc.duplicate || acc.created === undefined) return null
    const us = issuerIsUs(acc)
    if (us === null) return null
    if (!us) return namesOurSubkey(acc) ? null : false
    const created = acc.created
    if (created < k.created) return false // 'Key is newer than the signature'
    if (created < validFrom || created >= validUntil) return null
    const now = Math.floor(Date.now() / 1000)
    // peers' clocks differ: freshness is the frame's job (header.iat and meta
    // against the configured skew); here only refuse what is clearly wrong
    if (created > now + FUTURE_SKEW_SECONDS) return false
    if (acc.expires !== undefined && acc.expires !== 0 && now >= created + acc.expires) return false

    // the hash and the Ed25519 signature over it
    const hashedPortion = b.subarray(start, hashedEnd)
    const n = hashedPortion.length
    const trailer = Uint8Array.from([4, 0xff, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff])
    const digest = createHash(hashName).update(data).update(hashedPortion).update(trailer).digest()
    if (digest[0] !== left0 || digest[1] !== left1) return false
    return edVerify(null, digest, pubKey, sig)
  }

  return {
    verify (data: Uint8Array, signature: Uint8Array): boolean | null {
      try {
        return check(data, signature, pub)
      } catch {
        return false
      }
    }
  }
}

const signers = new WeakMap<openpgp.PrivateKey, Promise<FastSigner | null>>()
const verifiers = new WeakMap<openpgp.PublicKey, Promise<FastVerifier>>()

/**
 * The cached fast signer for a key, or null when the fast path cannot sign
 * exactly as openpgp.js would (not EdDSA legacy, encrypted, not a valid
 * signing key now, or openpgp.js would sign with a subkey). Key validity is
 * checked once, here; the signer refuses (throws) past the key's expiry.
 * The cache assumes the key object is not mutated afterwards.
 */
export async function fastSignerFor (privateKey: openpgp.PrivateKey): Promise<FastSigner | null> {
  let s = signers.get(privateKey)
  if (s === undefined) {
    s = (async () => {
      try {
        const signing = await privateKey.getSigningKey()
        if (signing !== privateKey) return null // openpgp.js would use a signing subkey
        const inner = createFastSigner(privateKey)
        const exp = await privateKey.getExpirationTime()
        if (exp === null) return null
        const until = exp === Infinity ? Infinity : (exp as Date).getTime()
        if (until === Infinity) return inner
        return {
          sign (data: Uint8Array): Uint8Array {
            if (Date.now() >= until) throw new FastSigUnsupportedError('the key has expired')
            return inner.sign(data)
          }
        }
      } catch {
        return null
      }
    })()
    signers.set(privateKey, s)
  }
  return await s
}

/**
 * The cached fast verifier for a key. Its validity (revocation, expiry,
 * self-signature, signing capability of the primary key) is checked once,
 * here, with openpgp.js; signatures created outside the window in which the
 * current self-signature makes the key valid are answered null. A key that
 * is not valid now gets a verifier that answers null to everything, so
 * openpgp.js gives the reason.
 */
export async function fastVerifierFor (publicKey: openpgp.PublicKey): Promise<FastVerifier> {
  let v = verifiers.get(publicKey)
  if (v === undefined) {
    v = (async (): Promise<FastVerifier> => {
      try {
        const signing = await publicKey.getSigningKey(publicKey.getKeyID())
        if (signing !== publicKey) return { verify: () => null }
        const self = await publicKey.getPrimaryUser()
        const exp = await publicKey.getExpirationTime()
        if (exp === null) return { verify: () => null }
        const opts: FastVerifierOptions = { validFrom: Math.floor(self.selfCertification.created!.getTime() / 1000) }
        if (exp !== Infinity) opts.validUntil = Math.floor((exp as Date).getTime() / 1000)
        return createFastVerifier(publicKey, opts)
      } catch {
        return { verify: () => null }
      }
    })()
    verifiers.set(publicKey, v)
  }
  return await v
}
