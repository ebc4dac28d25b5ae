import { sql, type ColumnType, type Kysely } from 'kysely'
import type { Db } from '../db/index.js'
import type { AccountClaim } from './uid.js'

/** The accounts tables (sql/20261122T062000000Z-accounts.sql), kept here so src/db stays shared-free. */
export type AccountState = 'active' | 'locked' | 'deleted' | 'lost' | 'blocked'

export interface AccountsTable {
  name: string
  origin: string
  created_at: ColumnType<Date, Date, Date>
  uid_number: number | null
  gecos: string
  shell: string
  keys: ColumnType<string[], string, string>
  state: ColumnType<AccountState, AccountState | undefined, AccountState>
  synced: ColumnType<boolean, boolean | undefined, boolean>
  received_at: ColumnType<Date, Date | undefined, Date>
}

export type AccountsSchema = {
  accounts: AccountsTable
  account_deletions: { name: string, deleted_at: ColumnType<Date, Date, Date>, by_peer: string }
  account_locks: { name: string, locked: boolean, at: ColumnType<Date, Date, Date>, by_peer: string, reason: ColumnType<string, string | undefined, string> }
  account_bans: { name: string, reason: ColumnType<string, string | undefined, string>, created_at: ColumnType<Date, Date | undefined, Date> }
  account_backfill: {
    id: ColumnType<number, number | undefined, number>
    peer: string | null
    state: ColumnType<'waiting' | 'running' | 'done', 'waiting' | 'running' | 'done' | undefined, 'waiting' | 'running' | 'done'>
    cursor: ColumnType<AccountClaim | null, string | null | undefined, string | null>
    received: ColumnType<number, number | undefined, number>
    total: ColumnType<number, number | undefined, number>
    started_at: ColumnType<Date | null, Date | null | undefined, Date | null>
    finished_at: ColumnType<Date | null, Date | null | undefined, Date | null>
    updated_at: ColumnType<Date, Date | undefined, Date>
  }
  account_peer_backfill: { peer_uuid: string, state: 'running' | 'done', received: number, total: number, at: ColumnType<Date, Date, Date> }
}

export function accountsDb (db: Db): Kysely<AccountsSchema> {
  return db.withTables<AccountsSchema>() as unknown as Kysely<AccountsSchema>
}

/** A user-add as it travels: the claim and the account's attributes. */
export interface ClaimData extends AccountClaim {
  gecos: string
  shell: string
  keys: string[]
}

export interface ClaimRow extends ClaimData {
  uidNumber: number | null
  state: AccountState
  synced: boolean
  receivedAt: Date
}

export interface LockRow { name: string, locked: boolean, at: number, by: string, reason: string }

type RawAccount = { name: string, origin: string, created_at: Date, uid_number: number | null, gecos: string, shell: string, keys: string[], state: AccountState, synced: boolean, received_at: Date }

export function toClaimRow (r: RawAccount): ClaimRow {
  return {
    name: r.name,
    origin: r.origin,
    createdAt: r.created_at.getTime(),
    uidNumber: r.uid_number === null ? null : Number(r.uid_number),
    gecos: r.gecos,
    shell: r.shell,
    keys: r.keys,
    state: r.state,
    synced: r.synced,
    receivedAt: r.received_at
  }
}

/** Row access for the accounts service. Small, explicit queries only. */
export class AccountStore {
  readonly db: Kysely<AccountsSchema>

  constructor (db: Db) { this.db = accountsDb(db) }

  async claimsOf (names: readonly string[]): Promise<ClaimRow[]> {
    if (names.length === 0) return []
    const rows = await this.db.selectFrom('accounts').selectAll().where('name', 'in', [...names]).execute()
    return rows.map(toClaimRow)
  }

  async deletionsOf (names: readonly string[]): Promise<Map<string, number[]>> {
    const out = new Map<string, number[]>()
    if (names.length === 0) return out
    const rows = await this.db.selectFrom('account_deletions').select(['name', 'deleted_at']).where('name', 'in', [...names]).execute()
    for (const r of rows) out.set(r.name, [...(out.get(r.name) ?? []), r.deleted_at.getTime()])
    return out
  }

  async locksOf (names: readonly string[]): Promise<Map<string, LockRow>> {
    if (names.length === 0) return new Map()
    const rows = await this.db.selectFrom('account_locks').selectAll().where('name', 'in', [...names]).execute()
    return new Map(rows.map((r) => [r.name, { name: r.name, locked: r.locked, at: r.at.getTime(), by: r.by_peer, reason: r.reason }]))
  }

  /**
   * The applied accounts whose lock may differ from LDAP's: every one agreed
   * locked, and those of `ldapLocked` agreed active. The rest (active here
   * and not locked in LDAP) cannot differ, so they are not read.
   */
  async lockCandidates (ldapLocked: readonly string[]): Promise<Array<{ name: string, state: AccountState }>> {
    const applied = this.db.selectFrom('accounts').select(['name', 'state']).where('synced', '=', true)
    // one array parameter: any number of names (an IN list is capped at 65,535 parameters)
    const rows = await applied.where('state', '=', 'locked')
      .unionAll(applied.where('state', '=', 'active').where(sql<boolean>`name = any(${[...ldapLocked]}::text[])`)).execute()
    return rows.map((r) => ({ name: r.name, state: r.state as AccountState }))
  }

  async bansOf (names: readonly string[]): Promise<Set<string>> {
    if (names.length === 0) return new Set()
    const rows = await this.db.selectFrom('account_bans').select('name').where('name', 'in', [...names]).execute()
    return new Set(rows.map((r) => r.name))
  }

  /** The last claim (in claim order) that holds a number, or null. */
  async lastNumbered (): Promise<AccountClaim | null> {
    const r = await this.db.selectFrom('accounts').select(['name', 'origin', 'created_at']).where('uid_number', 'is not', null)
      .orderBy('created_at', 'desc').orderBy('origin', 'desc').orderBy('name', 'desc').limit(1).executeTakeFirst()
    return r === undefined ? null : { name: r.name, origin: r.origin, createdAt: r.created_at.getTime() }
  }

  async heldUids (): Promise<Set<number>> {
    const rows = await this.db.selectFrom('accounts').select('uid_number').where('uid_number', 'is not', null).execute()
    return new Set(rows.map((r) => Number(r.uid_number)))
  }

  /** Every claim that holds a number or should (not lost), for a full reassignment. */
  async allClaims (): Promise<ClaimRow[]> {
    return (await this.db.selectFrom('accounts').selectAll().execute()).map(toClaimRow)
  }

  async allDeletions (): Promise<Map<string, number[]>> {
    const out = new Map<string, number[]>()
    for (const r of await this.db.selectFrom('account_deletions').select(['name', 'deleted_at']).execute()) out.set(r.name, [...(out.get(r.name) ?? []), r.deleted_at.getTime()])
    return out
  }

  /** Names held by an active or locked claim (they must have a tree here). */
  async heldNames (): Promise<string[]> {
    const rows = await this.db.selectFrom('accounts').select('name').distinct().where('state', 'in', ['active', 'locked']).where('synced', '=', true).execute()
    return rows.map((r) => r.name)
  }

  async markUnsynced (names: readonly string[]): Promise<void> {
    for (let i = 0; i < names.length; i += 1000) await this.db.updateTable('accounts').set({ synced: false }).where('name', 'in', names.slice(i, i + 1000)).execute()
  }

  async unsyncedNames (limit: number): Promise<string[]> {
    const rows = await this.db.selectFrom('accounts').select('name').distinct().where('synced', '=', false).limit(limit).execute()
    return rows.map((r) => r.name)
  }

  /** Page of claims after `after` in claim order (backfill). */
  async page (after: AccountClaim | null, limit: number): Promise<ClaimRow[]> {
    let q = this.db.selectFrom('accounts').selectAll()
    if (after !== null) {
      q = q.where(sql<boolean>`(created_at, origin, name) > (${new Date(after.createdAt)}, ${after.origin}::uuid, ${after.name})`)
    }
    const rows = await q.orderBy('created_at').orderBy('origin').orderBy('name').limit(limit).execute()
    return rows.map(toClaimRow)
  }

  async countClaims (): Promise<number> {
    const r = await this.db.selectFrom('accounts').select(sql<number>`count(*)`.as('n')).executeTakeFirst()
    return Number(r?.n ?? 0)
  }
}
