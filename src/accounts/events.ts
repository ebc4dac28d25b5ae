import { SchemaError } from '../errors.js'
import { isUuid } from '../wire/frame.js'
import { ReservedUsernameError } from './errors.js'
import { parseSshPublicKeys } from './keys.js'
import { checkGecos, checkShell, checkUsernameSyntax, isReservedName } from './names.js'
import type { ClaimData, LockRow } from './store.js'
import type { AccountClaim } from './uid.js'

/**
 * The accounts events (RFC 3 "User Accounts"), all sent by the built-in
 * service `center-accounts`. Every field from another peer is checked here
 * before anything is written; a refusal throws a typed error.
 *
 *   user-add               to '*'   {name, createdAt, gecos, shell, keys}   (origin = meta.from)
 *   user-lock, user-unlock to '*'   {name, at, reason}
 *   user-del               to '*'   {name, at}
 *   user-backfill-request  to peer  {after: claim | null, limit}
 *   user-backfill          to peer  {after, claims: [...], deletions, locks, next, total, done}
 *   user-backfill-state    to '*'   {state: 'running' | 'done', received, total, at}   (the sender's own backfill)
 */
export const ACCOUNT_EVENTS = ['user-add', 'user-lock', 'user-unlock', 'user-del', 'user-backfill-request', 'user-backfill', 'user-backfill-state'] as const

export interface PeerBackfillReport { state: 'running' | 'done', received: number, total: number, at: number }

/** A claim's createdAt may differ from the event's iat by this much (clock skew, queueing before submit). */
export const CREATED_AT_SLACK_MS = 10 * 60_000

const obj = (v: unknown, what: string): Record<string, unknown> => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SchemaError(`${what} must be an object`)
  return v as Record<string, unknown>
}

const time = (v: unknown, what: string): number => {
  if (!Number.isSafeInteger(v) || (v as number) <= 0) throw new SchemaError(`${what} must be a positive integer (ms since the epoch)`)
  return v as number
}

/** A federation-wide valid name: the syntax and the reserved list (this box's own users are checked where it applies). */
export function checkFederationName (v: unknown): string {
  checkUsernameSyntax(v)
  if (isReservedName(v)) throw new ReservedUsernameError(`username "${v}" is reserved`)
  return v
}

export function checkClaimData (v: unknown, origin?: string): ClaimData {
  const d = obj(v, 'user-add data')
  const name = checkFederationName(d.name)
  const o = origin ?? d.origin
  if (!isUuid(o)) throw new SchemaError('claim origin must be a peer UUID')
  const createdAt = time(d.createdAt, 'createdAt')
  const gecos = d.gecos ?? ''
  checkGecos(gecos)
  checkShell(d.shell)
  const keys = parseSshPublicKeys(d.keys).map((k) => k.line)
  return { name, origin: o, createdAt, gecos, shell: d.shell, keys }
}

export function checkLockData (v: unknown, locked: boolean, by: string): LockRow {
  const d = obj(v, 'lock data')
  const reason = typeof d.reason === 'string' ? d.reason.slice(0, 200) : ''
  return { name: checkFederationName(d.name), locked, at: time(d.at, 'at'), by, reason }
}

export function checkDeletion (v: unknown, by: string): { name: string, at: number, by: string } {
  const d = obj(v, 'user-del data')
  return { name: checkFederationName(d.name), at: time(d.at, 'at'), by }
}

export function checkCursor (v: unknown): AccountClaim | null {
  if (v === null || v === undefined) return null
  const c = obj(v, 'cursor')
  checkUsernameSyntax(c.name)
  if (!isUuid(c.origin)) throw new SchemaError('cursor origin must be a UUID')
  return { name: c.name, origin: c.origin, createdAt: time(c.createdAt, 'cursor createdAt') }
}

const count = (v: unknown, what: string): number => {
  if (!Number.isSafeInteger(v) || (v as number) < 0 || (v as number) > 2 ** 31 - 1) throw new SchemaError(`${what} must be a non-negative integer`)
  return v as number
}

export function checkBackfillReport (v: unknown): PeerBackfillReport {
  const d = obj(v, 'user-backfill-state data')
  if (d.state !== 'running' && d.state !== 'done') throw new SchemaError('user-backfill-state state must be "running" or "done"')
  return { state: d.state, received: count(d.received, 'received'), total: count(d.total, 'total'), at: time(d.at, 'at') }
}
