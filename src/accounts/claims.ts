import { compareClaims, candidateUid, UID_SPACE, type AccountClaim, type UidSpace } from './uid.js'
import { UidCollisionError } from './errors.js'

/**
 * The replicated account state as a pure function of what every peer has
 * seen: the claims (user-add events), the deletions (user-del) and the locks
 * (user-lock / user-unlock). Two peers that have seen the same events compute
 * the same owners, states and uidNumbers, whatever order the events came in.
 * docs/accounts.md "Convergence across peers" has the argument.
 */

export type { AccountClaim }

export const claimKey = (c: AccountClaim): string => `${c.name}\u0000${c.createdAt}\u0000${c.origin}`

/** When a claim was deleted: the earliest deletion of its name at or after its creation, or null. */
export function deletedAt (c: AccountClaim, deletions: readonly number[]): number | null {
  let best: number | null = null
  for (const t of deletions) if (t >= c.createdAt && (best === null || t < best)) best = t
  return best
}

/**
 * A claim is lost when an earlier claim on the same name was still alive
 * (not yet deleted) when it was made: the name was taken, whether or not the
 * later peer knew it yet (a race, or a partition).
 */
export function isLost (c: AccountClaim, sameName: readonly AccountClaim[], deletions: readonly number[]): boolean {
  return sameName.some((d) => {
    if (compareClaims(d, c) >= 0) return false
    const gone = deletedAt(d, deletions)
    return gone === null || gone > c.createdAt
  })
}

export interface NameState {
  /** the claim that holds the name now (not lost, not deleted), or null */
  owner: AccountClaim | null
  /** keys of the claims that lost the name */
  lost: Set<string>
  /** claim key → deletion time */
  deleted: Map<string, number>
}

/** Owner, lost and deleted claims of one name. */
export function nameState (claims: readonly AccountClaim[], deletions: readonly number[]): NameState {
  const lost = new Set<string>()
  const deleted = new Map<string, number>()
  let owner: AccountClaim | null = null
  for (const c of claims) {
    const gone = deletedAt(c, deletions)
    if (gone !== null) deleted.set(claimKey(c), gone)
    if (isLost(c, claims, deletions)) lost.add(claimKey(c))
    else if (gone === null) owner = c
  }
  return { owner, lost, deleted }
}

/**
 * uidNumbers for every claim that did not lose its name (deleted ones keep
 * theirs forever, so a deletion never moves anyone): in claim order, each
 * takes the first probe of its name not taken by an earlier one.
 */
export function assignClaimUids (claims: readonly AccountClaim[], space: UidSpace = UID_SPACE): Map<string, number> {
  const taken = new Set<number>()
  const out = new Map<string, number>()
  for (const c of [...claims].sort(compareClaims)) {
    const uid = firstFree(c.name, taken, space)
    taken.add(uid)
    out.set(claimKey(c), uid)
  }
  return out
}

/** The first probe of `name` not in `taken`. */
export function firstFree (name: string, taken: ReadonlySet<number>, space: UidSpace = UID_SPACE): number {
  for (let probe = 0; probe < space.slots; probe++) {
    const u = candidateUid(name, probe, space)
    if (!taken.has(u)) return u
  }
  throw new UidCollisionError('the uid space is full')
}

/** Last writer wins: later time, then the larger peer uuid. */
export function newerLock (a: { at: number, by: string }, b: { at: number, by: string } | null): boolean {
  return b === null || a.at > b.at || (a.at === b.at && a.by > b.by)
}
