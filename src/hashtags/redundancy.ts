/**
 * Redundancy sets (§7): R = 2^j equidistant replicas per key, content
 * partitions P = R/4 for storage, and the signed overload tokens relays hand
 * to publishers so that hot spares only activate on a real overload.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto'
import { InvalidOverloadTokenError, InvalidRedundancyError, InvalidPostUriError } from './errors.js'
import { RING_SIZE, bytesToId, idToHex, ringAdd, type Id } from './ids.js'

/**
 * Default R. The paper names both 2 (§7) and 4 (§7.2, §8.2); we use 4: it
 * survives three failures, gives a majority for Merkle cross-checks, and makes
 * the storage partition count P = R/4 a whole number from the start.
 */
export const DEFAULT_REDUNDANCY = 4
export const MAX_REDUNDANCY = 256
/** Longest post URI accepted (§3.3: URIs are at most 1 KiB). */
export const MAX_URI_BYTES = 1024

export function assertRedundancy (r: unknown): number {
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 1 || r > MAX_REDUNDANCY || (r & (r - 1)) !== 0) {
    throw new InvalidRedundancyError(`redundancy must be a power of two from 1 to ${MAX_REDUNDANCY}`)
  }
  return r
}

/** Z = { k + i·2^m/R | 0 ≤ i < R }; the first R of 2R are the same points, so doubling keeps replicas in place */
export function replicaLocations (key: Id, r: number): Id[] {
  assertRedundancy(r)
  const step = RING_SIZE / BigInt(r)
  return Array.from({ length: r }, (_, i) => ringAdd(key, step * BigInt(i)))
}

export function replicaLocation (key: Id, replica: number, r: number): Id {
  assertRedundancy(r)
  if (!Number.isInteger(replica) || replica < 0 || replica >= r) throw new InvalidRedundancyError(`replica must be in [0, ${r})`)
  return ringAdd(key, (RING_SIZE / BigInt(r)) * BigInt(replica))
}

/**
 * Under R = 2^j ≥ 4 the replicas split the posts in P = R/4 parts by content
 * hash; replica i holds part (i mod P). Every part keeps 4 replicas.
 */
export function partitions (r: number): number {
  return Math.max(1, assertRedundancy(r) / 4)
}

export function partOf (replica: number, r: number): number {
  return replica % partitions(r)
}

export function contentPart (uri: string, parts: number): number {
  const h = bytesToId(createHash('sha3-256').update(uri, 'utf8').digest())
  return Number((h * BigInt(parts)) / RING_SIZE)
}

/** hostile-input check of a post reference: an absolute http(s) URI of at most 1 KiB */
export function validatePostUri (uri: unknown): string {
  if (typeof uri !== 'string') throw new InvalidPostUriError('a post reference must be a URI string')
  if (Buffer.byteLength(uri, 'utf8') > MAX_URI_BYTES) throw new InvalidPostUriError(`post URI is longer than ${MAX_URI_BYTES} bytes`)
  // eslint-disable-next-line no-control-regex
  if (/[\s\u0000-\u001f\u007f]/.test(uri)) throw new InvalidPostUriError('post URI contains white space or control characters')
  let url: URL
  try {
    url = new URL(uri)
  } catch {
    throw new InvalidPostUriError('post reference is not an absolute URI')
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new InvalidPostUriError('post URI must be http(s)')
  if (url.hostname === '' || url.username !== '' || url.password !== '') throw new InvalidPostUriError('post URI must name a host and no credentials')
  return uri
}

export function validateTimestamp (ts: unknown, now: number, skewMs = 5 * 60_000): number {
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts <= 0 || ts > now + skewMs) {
    throw new InvalidPostUriError('timestamp must be a positive integer (ms) not in the future')
  }
  return ts
}

// ------------------------------------------------------------ overload tokens

export interface OverloadToken {
  /** node ID (hex) of the relay that signed */
  relay: string
  tagKey: string
  redundancy: number
  ts: number
  /** ed25519 signature, base64 */
  sig: string
}

export interface Signer {
  readonly publicKey: KeyObject
  sign: (data: Buffer) => string
}

/** An ed25519 key from a 32-byte seed (the service will load its instance key instead). */
export function createSigner (seed: Buffer): Signer {
  if (seed.length !== 32) throw new RangeError('seed must be 32 bytes')
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed])
  const key = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })
  return { publicKey: createPublicKey(key), sign: data => sign(null, data, key).toString('base64') }
}

function tokenBytes (t: Omit<OverloadToken, 'sig'>): Buffer {
  return Buffer.from(`hashtags-overload\n${t.relay}\n${t.tagKey}\n${t.redundancy}\n${t.ts}`, 'utf8')
}

export function signOverloadToken (signer: Signer, relay: Id, tagKey: Id, redundancy: number, ts: number): OverloadToken {
  const body = { relay: idToHex(relay), tagKey: idToHex(tagKey), redundancy, ts }
  return { ...body, sig: signer.sign(tokenBytes(body)) }
}

/** Where a relay's public key is found (the service fetches it from the instance over HTTPS). */
export interface KeyDirectory {
  publicKeyOf: (relayId: string) => KeyObject | undefined
}

export function verifyOverloadToken (token: unknown, keys: KeyDirectory, tagKey: Id, now: number, maxAgeMs: number): OverloadToken {
  if (typeof token !== 'object' || token === null) throw new InvalidOverloadTokenError('no overload token')
  const t = token as Record<string, unknown>
  if (typeof t.relay !== 'string' || typeof t.tagKey !== 'string' || typeof t.sig !== 'string' ||
    typeof t.ts !== 'number' || typeof t.redundancy !== 'number') {
    throw new InvalidOverloadTokenError('malformed overload token')
  }
  if (t.tagKey !== idToHex(tagKey)) throw new InvalidOverloadTokenError('overload token is for another hashtag')
  if (t.ts > now + 60_000 || now - t.ts > maxAgeMs) throw new InvalidOverloadTokenError('overload token is stale')
  const key = keys.publicKeyOf(t.relay)
  if (key === undefined) throw new InvalidOverloadTokenError('overload token is signed by an unknown relay')
  const body = { relay: t.relay, tagKey: t.tagKey, redundancy: t.redundancy, ts: t.ts }
  if (!verify(null, tokenBytes(body), key, Buffer.from(t.sig, 'base64'))) {
    throw new InvalidOverloadTokenError('overload token signature does not verify')
  }
  return { ...body, sig: t.sig }
}

export function createKeyDirectory (): KeyDirectory & { add: (relayId: string, key: KeyObject) => void } {
  const keys = new Map<string, KeyObject>()
  return { publicKeyOf: id => keys.get(id), add: (id, key) => { keys.set(id, key) } }
}
