/**
 * Identifiers of the hashtag DHT (paper §5.1-5.2): m = 256 bit ring
 * positions as bigints, hashtag keys, node IDs, and ring arithmetic.
 */
import { createHash } from 'node:crypto'
import { isIP, isIPv4, isIPv6 } from 'node:net'
import { domainToASCII } from 'node:url'
import { getDomain } from 'tldts'
import {
  InvalidAddressError, InvalidDomainError, InvalidTagError, InvalidVserverError,
  MalformedIdError, TagTooLongError
} from './errors.js'

/** bits in a ring position */
export const M = 256
export const RING_SIZE = 1n << 256n
const MASK = RING_SIZE - 1n

/** A ring position: an integer in [0, 2^256). */
export type Id = bigint

/** Longest normalised tag accepted, in UTF-8 bytes. */
export const MAX_TAG_BYTES = 256
/** Virtual server numbers are small (κ is 8 by default); this caps them. */
export const MAX_VSERVER = 0xffff

// ---------------------------------------------------------------- tags

/**
 * Normalise a hashtag so that every instance derives the same key:
 * 1. trim surrounding white space, drop one leading `#` (or the fullwidth `＃`);
 * 2. Unicode NFKC (so `ｔａｇ` and `tag`, ligatures and composed forms agree);
 * 3. lower case with `toLowerCase()` (locale independent), then NFKC again
 *    because lower-casing can un-normalise a few characters;
 * 4. accept only letters, marks, digits, `_`, `·` and ZWNJ (what Mastodon
 *    and Twitter accept in a tag), at most 256 UTF-8 bytes.
 */
export function normaliseTag (tag: string): string {
  if (typeof tag !== 'string') throw new InvalidTagError('a hashtag must be a string')
  let t = tag.trim()
  if (t.startsWith('#') || t.startsWith('\uff03')) t = t.slice(1)
  t = t.normalize('NFKC').toLowerCase().normalize('NFKC')
  if (Buffer.byteLength(t, 'utf8') > MAX_TAG_BYTES) {
    throw new TagTooLongError(`hashtag is longer than ${MAX_TAG_BYTES} bytes after normalisation`)
  }
  if (t.length === 0) throw new InvalidTagError('hashtag is empty')
  if (!/^[\p{L}\p{M}\p{N}_\u00b7\u200c]+$/u.test(t)) {
    throw new InvalidTagError(`hashtag "${t.slice(0, 40)}" contains characters other than letters, digits and _`)
  }
  return t
}

/** hk: SHA3-256 of the UTF-8 bytes of the normalised tag. */
export function tagKey (tag: string): Id {
  return bytesToId(createHash('sha3-256').update(normaliseTag(tag), 'utf8').digest())
}

// ---------------------------------------------------------------- addresses

/** Parse an IPv6 address into 16 bytes; IPv4 and IPv4-mapped forms are refused. */
export function parseIPv6 (addr: string): Buffer {
  if (typeof addr !== 'string' || addr.length === 0) throw new InvalidAddressError('no IPv6 address given')
  const plain = addr.startsWith('[') && addr.endsWith(']') ? addr.slice(1, -1) : addr
  if (isIPv4(plain)) throw new InvalidAddressError(`${addr} is an IPv4 address; node IDs need an IPv6 address`)
  if (plain.includes('%')) throw new InvalidAddressError(`${addr} has a zone index; give a global IPv6 address`)
  if (!isIPv6(plain)) {
    throw new InvalidAddressError(`${addr} is not an IPv6 address`)
  }
  const bytes = expandIPv6(plain)
  if (bytes.subarray(0, 10).every(b => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    throw new InvalidAddressError(`${addr} is an IPv4-mapped address; node IDs need a native IPv6 address`)
  }
  return bytes
}

function expandIPv6 (addr: string): Buffer {
  let text = addr.toLowerCase()
  const tail: number[] = []
  const lastColon = text.lastIndexOf(':')
  const last = text.slice(lastColon + 1)
  if (last.includes('.')) {
    for (const part of last.split('.')) tail.push(Number(part))
    text = text.slice(0, lastColon + 1) + '0:0'
  }
  const [head, rest] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined]
  const headGroups = head === '' ? [] : head.split(':')
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':')
  const fill = 8 - headGroups.length - restGroups.length
  const groups = [...headGroups, ...new Array<string>(rest === undefined ? 0 : fill).fill('0'), ...restGroups]
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2))
  if (tail.length === 4) tail.forEach((b, i) => { out[12 + i] = b })
  return out
}

/** The /64 prefix (first 8 bytes) of an IPv6 address, as lowercase hex. */
export function subnet64 (addr: string): string {
  return parseIPv6(addr).subarray(0, 8).toString('hex')
}

/**
 * Reduce a host name to its registered domain (eTLD+1) in Punycode.
 * The ICANN section of the Public Suffix List is used, not the PRIVATE one:
 * otherwise every free `*.github.io` name would count as its own registered
 * domain, which would make Sybil identities free (§8.4).
 */
export function registeredDomain (name: string): string {
  if (typeof name !== 'string' || name.trim() === '') throw new InvalidDomainError('no domain name given')
  let host = name.trim().toLowerCase()
  if (host.endsWith('.')) host = host.slice(0, -1)
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
  if (isIP(bare) !== 0) throw new InvalidDomainError(`${name} is an IP address; give the instance's domain name`)
  const ascii = domainToASCII(host)
  if (ascii === '') throw new InvalidDomainError(`${name} is not a valid domain name`)
  const domain = getDomain(ascii, { allowPrivateDomains: false, validateHostname: true })
  if (domain === null || domain === '') {
    throw new InvalidDomainError(`${name} has no registered domain under the Public Suffix List`)
  }
  return domain
}

/** Big-endian bytes of the vserver number, padded to whole bytes (at least one). */
export function vserverBytes (vserver: number): Buffer {
  if (!Number.isInteger(vserver) || vserver < 0 || vserver > MAX_VSERVER) {
    throw new InvalidVserverError(`vserver must be an integer from 0 to ${MAX_VSERVER}, got ${String(vserver)}`)
  }
  return vserver < 256 ? Buffer.from([vserver]) : Buffer.from([vserver >> 8, vserver & 0xff])
}

function shake128 (parts: Buffer[]): Buffer {
  const h = createHash('shake128', { outputLength: 16 })
  for (const p of parts) h.update(p)
  return h.digest()
}

/** Node ID inputs once validated: the /64 bytes and the Punycode registered domain. */
export interface NodeIdInput {
  ip: string
  domain: string
  vserver: number
}

/**
 * hn(ip, domain, vserver) = SHAKE128(ip[0..63] ‖ vs)[0..63]
 *   ‖ SHAKE128(domain ‖ vs)[0..127] ‖ SHAKE128(ip[0..63] ‖ vs)[64..127]
 */
export function nodeId (input: NodeIdInput): Id {
  const prefix = parseIPv6(input.ip).subarray(0, 8)
  return nodeIdFromParts(prefix, registeredDomain(input.domain), input.vserver)
}

/** As nodeId, for callers that already hold the /64 bytes and the registered domain. */
export function nodeIdFromParts (prefix: Buffer, domain: string, vserver: number): Id {
  const vs = vserverBytes(vserver)
  const net = shake128([prefix, vs])
  const dom = shake128([Buffer.from(domain, 'utf8'), vs])
  return bytesToId(Buffer.concat([net.subarray(0, 8), dom, net.subarray(8, 16)]))
}

// ---------------------------------------------------------------- encoding

export function bytesToId (bytes: Uint8Array): Id {
  return BigInt('0x' + Buffer.from(bytes).toString('hex'))
}

export function idToHex (id: Id): string {
  return id.toString(16).padStart(64, '0')
}

/** Parse a 64-digit hex ring position; anything else is a MalformedIdError. */
export function parseId (hex: unknown): Id {
  if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/.test(hex)) {
    throw new MalformedIdError('an ID must be 64 lowercase hex digits')
  }
  return BigInt('0x' + hex)
}

/** The top 53 bits as a float in [0, 1): good enough for plots and statistics. */
export function idToUnit (id: Id): number {
  return Number(id >> 203n) / 2 ** 53
}

// ---------------------------------------------------------------- ring arithmetic

export function ringAdd (a: Id, b: Id): Id {
  return (a + b) & MASK
}

/** Clockwise distance from a to b. */
export function ringDistance (a: Id, b: Id): Id {
  return (b - a) & MASK
}

/** x ∈ (a, b) clockwise; when a == b the interval is the whole ring but a. */
export function inOpen (x: Id, a: Id, b: Id): boolean {
  if (a === b) return x !== a
  return ringDistance(a, x) > 0n && ringDistance(a, x) < ringDistance(a, b)
}

/** x ∈ (a, b] clockwise; when a == b the interval is the whole ring. */
export function inHalfOpen (x: Id, a: Id, b: Id): boolean {
  if (a === b) return true
  const d = ringDistance(a, x)
  return d > 0n && d <= ringDistance(a, b)
}
