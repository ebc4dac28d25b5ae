/**
 * Peers as they travel in messages, and their verification: a node ID is
 * only believed after it has been recomputed from the IP and domain (§5.2).
 */
import { isIPv6 } from 'node:net'
import { ForgedNodeIdError, MalformedMessageError } from './errors.js'
import { idToHex, nodeIdFromParts, parseIPv6, parseId, registeredDomain, type Id } from './ids.js'

/** A node as it is named in messages. */
export interface PeerInfo {
  /** node ID, 64 hex digits */
  id: string
  /** the node's IPv6 address */
  ip: string
  /** the instance's host name (reduced to its registered domain for the ID) */
  domain: string
  vserver: number
}

/** A verified peer, with what routing tables need precomputed. */
export interface Peer {
  info: PeerInfo
  id: Id
  /** /64 prefix, hex */
  subnet: string
  /** registered domain, Punycode */
  regDomain: string
}

/** Transport address of a node on one ring; derived, so it cannot be forged separately. */
export function addressOf (ring: string, info: PeerInfo): string {
  return `${ring}:${info.vserver}@${info.domain}/[${info.ip}]`
}

/** Check the shape of an untrusted PeerInfo (not yet its ID). */
export function parsePeerInfo (value: unknown): PeerInfo {
  if (typeof value !== 'object' || value === null) throw new MalformedMessageError('peer must be an object')
  const v = value as Record<string, unknown>
  if (typeof v.ip !== 'string' || v.ip.length > 64 || !isIPv6(v.ip)) throw new MalformedMessageError('peer.ip must be an IPv6 address')
  if (typeof v.domain !== 'string' || v.domain.length === 0 || v.domain.length > 253) throw new MalformedMessageError('peer.domain must be a host name')
  if (typeof v.vserver !== 'number' || !Number.isInteger(v.vserver) || v.vserver < 0 || v.vserver > 0xffff) {
    throw new MalformedMessageError('peer.vserver must be a small integer')
  }
  parseId(v.id)
  return { id: v.id as string, ip: v.ip, domain: v.domain, vserver: v.vserver }
}

export function sameIp (a: string, b: string): boolean {
  try {
    return parseIPv6(a).equals(parseIPv6(b))
  } catch {
    return false
  }
}

export interface IdVerifier {
  /** parse and verify; ForgedNodeIdError when the ID does not match IP and domain */
  verify: (value: unknown) => Peer
}

export interface IdVerifierInit {
  /** verified peers remembered, since verification hashes three times @default 100000 */
  cacheSize?: number
}

/**
 * A verifier with a bounded cache. Verification is a pure function of the
 * peer's fields, so nodes in one process may share one verifier.
 */
export function createIdVerifier (init: IdVerifierInit = {}): IdVerifier {
  const cacheSize = init.cacheSize ?? 100_000
  const cache = new Map<string, Peer>()
  return {
    verify (value) {
      const info = parsePeerInfo(value)
      const key = `${info.id}|${info.ip}|${info.domain}|${info.vserver}`
      const hit = cache.get(key)
      if (hit !== undefined) return hit
      const peer = computePeer(info)
      if (cache.size >= cacheSize) cache.delete(cache.keys().next().value as string)
      cache.set(key, peer)
      return peer
    }
  }
}

function computePeer (info: PeerInfo): Peer {
  let regDomain: string
  let prefix: Buffer
  try {
    prefix = parseIPv6(info.ip).subarray(0, 8)
    regDomain = registeredDomain(info.domain)
  } catch (err) {
    throw new ForgedNodeIdError(`node ${info.id.slice(0, 12)}… has an invalid address or domain: ${(err as Error).message}`)
  }
  const id = nodeIdFromParts(prefix, regDomain, info.vserver)
  if (idToHex(id) !== info.id) {
    throw new ForgedNodeIdError(`node ID ${info.id.slice(0, 12)}… does not match ${info.ip}, ${info.domain}, vserver ${info.vserver}`)
  }
  return { info, id, subnet: prefix.toString('hex'), regDomain }
}

/** Build our own peer record (throws the ids.ts errors for bad input). */
export function selfPeer (ip: string, domain: string, vserver: number): Peer {
  const prefix = parseIPv6(ip).subarray(0, 8)
  const regDomain = registeredDomain(domain)
  const id = nodeIdFromParts(prefix, regDomain, vserver)
  return { info: { id: idToHex(id), ip, domain, vserver }, id, subnet: prefix.toString('hex'), regDomain }
}
