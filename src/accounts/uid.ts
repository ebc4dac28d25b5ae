import { createHash } from 'node:crypto'
import { UidCollisionError } from './errors.js'

/**
 * uidNumber scheme (docs/accounts.md has the argument in full).
 *
 * Federation numbers live in [2^30, 2^30 + 2^29): far above Debian's system
 * (0–999), local user (1000–59999), nobody (65534) and default subordinate-id
 * (100000–600100000) ranges, and below 2^31 so signed 32-bit uid_t code is
 * safe. A name's home slot is SHA-256(name) mod 2^29; on a collision it
 * probes linearly (slot+1, slot+2, … wrapping). The gidNumber of the user's
 * own group is the same number.
 *
 * Across peers: the set of account claims (name, createdAt, origin peer) is
 * replicated; `assignUids` is a pure function of that set, so every peer that
 * has seen the same claims computes the same numbers. Earlier claims win a
 * slot; later ones probe on.
 */

export interface UidSpace {
  base: number
  slots: number
}

export const UID_SPACE: UidSpace = { base: 2 ** 30, slots: 2 ** 29 }
/** Probing further than this means something is wrong (a flooded range), not bad luck. */
export const MAX_PROBES = 1024

/** The home slot of a name: the first 4 bytes of SHA-256(utf8 name), big-endian, mod slots. */
export function homeSlot (name: string, space: UidSpace = UID_SPACE): number {
  return createHash('sha256').update(name, 'utf8').digest().readUInt32BE(0) % space.slots
}

/** The uidNumber tried at `probe` (0 = the home slot). */
export function candidateUid (name: string, probe: number, space: UidSpace = UID_SPACE): number {
  return space.base + ((homeSlot(name, space) + probe) % space.slots)
}

export function inUidSpace (uid: number, space: UidSpace = UID_SPACE): boolean {
  return Number.isInteger(uid) && uid >= space.base && uid < space.base + space.slots
}

export interface AllocateOptions {
  /** which name holds this uidNumber (as uid or gid) in the directory, or null */
  ownerOf: (uid: number) => Promise<string | null>
  /** uid and gid numbers of this box's local users and groups; never handed out */
  localIds: ReadonlySet<number>
  space?: UidSpace
  maxProbes?: number
}

/**
 * The number for a new (or existing) name on this peer: the first probe that
 * is neither a local id nor held by another name in the directory. An
 * existing entry for the same name keeps its number (idempotent).
 */
export async function allocateUid (name: string, opts: AllocateOptions): Promise<number> {
  const max = opts.maxProbes ?? MAX_PROBES
  for (let probe = 0; probe < max; probe++) {
    const uid = candidateUid(name, probe, opts.space)
    if (opts.localIds.has(uid)) continue
    const owner = await opts.ownerOf(uid)
    if (owner === null || owner === name) return uid
  }
  throw new UidCollisionError(`no free uidNumber for "${name}" within ${max} probes`, { detail: { name } })
}

/** One peer's record that a name was created: replicated to all peers. */
export interface AccountClaim {
  name: string
  /** creation time, ms since the epoch, as stamped by the origin peer */
  createdAt: number
  /** uuid of the peer where the account was created */
  origin: string
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

/** Priority order of claims: earlier createdAt, then smaller origin uuid, then name. Total and the same everywhere. */
export function compareClaims (a: AccountClaim, b: AccountClaim): number {
  return (a.createdAt - b.createdAt) || cmp(a.origin, b.origin) || cmp(a.name, b.name)
}

/** Among claims on the same name (created on two peers at once), the winner: the first in claim order. */
export function winningClaims (claims: readonly AccountClaim[]): AccountClaim[] {
  const best = new Map<string, AccountClaim>()
  for (const c of claims) {
    const cur = best.get(c.name)
    if (cur === undefined || compareClaims(c, cur) < 0) best.set(c.name, c)
  }
  return [...best.values()].sort(compareClaims)
}

/**
 * The federation-wide assignment: claims in priority order, each takes the
 * first probe not taken by an earlier claim nor in `reserved` (numbers the
 * whole federation must avoid; it must be the same set on every peer).
 * A pure function of its inputs, which is what makes peers converge.
 */
export function assignUids (claims: readonly AccountClaim[], reserved: ReadonlySet<number> = new Set(), space: UidSpace = UID_SPACE): Map<string, number> {
  const taken = new Set<number>()
  const out = new Map<string, number>()
  for (const c of winningClaims(claims)) {
    let uid = -1
    for (let probe = 0; probe < space.slots; probe++) {
      const u = candidateUid(c.name, probe, space)
      if (!taken.has(u) && !reserved.has(u)) { uid = u; break }
    }
    if (uid < 0) throw new UidCollisionError('the uid space is full')
    taken.add(uid)
    out.set(c.name, uid)
  }
  return out
}

/** What must change to go from the numbers a peer has to the agreed assignment (the losers of a race). */
export function renumberings (current: ReadonlyMap<string, number>, target: ReadonlyMap<string, number>): Array<{ name: string, from: number | null, to: number }> {
  const out: Array<{ name: string, from: number | null, to: number }> = []
  for (const [name, to] of target) {
    const from = current.get(name) ?? null
    if (from !== to) out.push({ name, from, to })
  }
  return out.sort((a, b) => cmp(a.name, b.name))
}
