import { createHash } from 'node:crypto'

/** Length of a Kademlia node id in bytes (160 bits, as in the Kademlia paper and k-bucket's default). */
export const NODE_ID_BYTES = 20

/**
 * A peer's node id: SHA-256 of its UUID in canonical text form (lowercase,
 * hyphenated, UTF-8), truncated to the first 20 bytes.
 *
 * Why derived and not chosen: a peer cannot pick where it sits in the key
 * space, and every peer computes the same id from the uuid it already knows,
 * so ids never travel on the wire and are never trusted from a remote.
 * Lowercasing first keeps `ABC…` and `abc…` from becoming two peers.
 */
export function nodeIdOf (uuid: string): Uint8Array {
  return Uint8Array.from(cachedNodeId(uuid))
}

const ID_CACHE_MAX = 65_536
const idCache = new Map<string, Uint8Array>()

/**
 * `nodeIdOf` without the copy, memoised: lookups hash every uuid they hear
 * many times over. The result is shared, so callers must not mutate it. The
 * cache is dropped whole when full, which bounds what hostile uuids can cost.
 */
export function cachedNodeId (uuid: string): Uint8Array {
  let id = idCache.get(uuid)
  if (id !== undefined) return id
  const digest = createHash('sha256').update(uuid.toLowerCase(), 'utf8').digest()
  id = Uint8Array.from(digest.subarray(0, NODE_ID_BYTES))
  if (idCache.size >= ID_CACHE_MAX) idCache.clear()
  idCache.set(uuid, id)
  return id
}

export function idToHex (id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex')
}

export function idEquals (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * Compare the XOR distances of `a` and `b` to `target`, byte by byte.
 * Exact for any id length, unlike k-bucket's numeric distance, which loses
 * precision past about 6 bytes (a JS number holds 53 bits).
 */
export function compareDistance (target: Uint8Array, a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < target.length; i++) {
    const da = (a[i] ?? 0) ^ (target[i] ?? 0)
    const db = (b[i] ?? 0) ^ (target[i] ?? 0)
    if (da !== db) return da - db
  }
  return 0
}

/** Number of leading bits `a` and `b` share (the "bucket index" seen from `a`). */
export function commonPrefixBits (a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) {
    const x = (a[i] ?? 0) ^ (b[i] ?? 0)
    if (x !== 0) return i * 8 + Math.clz32(x) - 24
  }
  return a.length * 8
}
