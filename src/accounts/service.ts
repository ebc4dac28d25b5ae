import type { Client } from 'ldapts'
import type { Db } from '../db/index.js'
import { BadRequestError, ConflictError, NotFoundError, SchemaError, defineError } from '../errors.js'
import type { Logger } from '../logger.js'
import { Mutex } from '../crypto/mutex.js'
import type { DispatcherApi } from '../dispatcher/types.js'
import { ACCOUNTS_SERVICE, type ServiceRegistry } from '../services/registry.js'
import type { PeerDirectory } from '../peers/directory.js'
import type { Envelope } from '../wire/envelope.js'
import { isUuid } from '../wire/frame.js'
import { assignClaimUids, claimKey, firstFree, nameState } from './claims.js'
import { ACCOUNT_EVENTS, CREATED_AT_SLACK_MS, checkBackfillReport, checkClaimData, checkCursor, checkDeletion, checkLockData } from './events.js'
import { PeerBackfillReports, type PeerBackfillView } from './peer-backfill.js'
import { ensureHome, homeExists, rechownHome, removeHome } from './home.js'
import { DEFAULT_USER_LIMIT_BYTES, QuotaBackendError, type QuotaBackend } from '../quota/index.js'
import type { LdapDirectory, NewUser } from './directory.js'
import { checkGecos, checkShell, checkUsername, readLocalAccounts, type LocalAccountsReader } from './names.js'
import { parseSshPublicKeys } from './keys.js'
import { AccountStore, toClaimRow, type AccountsSchema, type AccountState, type ClaimData, type ClaimRow, type LockRow } from './store.js'
import { compareClaims, type AccountClaim } from './uid.js'
import { InboxConsumer } from '../services/consumer.js'

export { ACCOUNTS_SERVICE, ACCOUNT_EVENTS }

export interface AccountsInit {
  /** the /center root; homes are root/users/NAME */
  root: string
  /** largest event the dispatcher takes (backfill pages are cut to fit) */
  maxEventBytes: number
  /** how often the local LDAP is read for lockouts; @default 2000 */
  lockPollMs?: number
  /** how long an admin call waits for its event to be applied here; @default 20000 */
  applyTimeoutMs?: number
  /** a backfill request without an answer is sent again after this; @default 30000 */
  backfillRetryMs?: number
  /** claims per backfill page at most; @default 500 */
  backfillPageSize?: number
  /** LDAP requests in flight while applying a batch; @default 16 */
  ldapInFlight?: number
  /** add new users in LDAP transactions (RFC 5805) when a page brings several (config `[ldap] transactions`); @default false */
  ldapTransactions?: boolean
  /** the limit a new user tree gets from the quota backend; @default DEFAULT_USER_LIMIT_BYTES (5 MB) */
  userLimitBytes?: number
}

export interface AccountsComponents {
  db: Db
  /** our peer uuid */
  self: string
  dispatcher: DispatcherApi
  registry: ServiceRegistry
  peers: PeerDirectory
  directory: LdapDirectory
  logger: Logger
  /** this box's users and groups; @default /etc/passwd and /etc/group */
  localAccounts?: LocalAccountsReader
  /**
   * `[center] quota`: makes each new /center/users/NAME a quota'd tree (a
   * btrfs subvolume with a qgroup limit, a uid or project quota). Absent for
   * `none`: the tree is a plain directory and only sync enforces the limit.
   */
  quota?: QuotaBackend
}

export interface AddUserRequest { name: string, keys: string[], gecos?: string, shell?: string }

export interface UserView {
  name: string
  uidNumber: number | null
  state: AccountState
  origin: string
  createdAt: string
  gecos: string
  shell: string
  keys: string[]
  bannedHere: boolean
  synced: boolean
  /** for a lost claim: the claim that holds the name */
  lostTo?: { origin: string, createdAt: string } | null
}

export interface BackfillStatus {
  state: 'waiting' | 'running' | 'done'
  peer: string | null
  received: number
  total: number
  startedAt: Date | null
  finishedAt: Date | null
}

export const AccountNotAppliedError = defineError('AccountNotAppliedError', 'not-applied', 'the change was sent but is not applied here yet')
const DEFAULT_SHELL = '/bin/bash'
const RECONCILE_MS = 10_000
/** backfill pages sent per request: the joiner applies one while the next is on the wire */
const PAGES_PER_ANSWER = 8
/** users per LDAP transaction (two entries each); a failed one is retried user by user */
const TXN_USERS = 100
/** a joining peer tells the others its progress at most this often */
const BACKFILL_TELL_MS = 5000

const sameCursor = (a: AccountClaim | null, b: AccountClaim | null): boolean =>
  a === null || b === null ? a === b : a.name === b.name && a.origin === b.origin && a.createdAt === b.createdAt

/**
 * The built-in service `center-accounts` (RFC 3 "User Accounts"). It reads
 * its events from the durable inbox like any service, its own included
 * (user-add goes to '*', so the origin applies it by the same path as
 * everyone), and makes this peer's LDAP and /center/users match the
 * replicated claim log. Everything that changes LDAP runs under one lock.
 */
export class AccountsService {
  readonly store: AccountStore
  private readonly work = new Mutex()
  private readonly consumer: InboxConsumer
  private timers: NodeJS.Timeout[] = []
  private readonly local: LocalAccountsReader
  /** lock changes we emitted and have not seen applied yet: name → locked */
  private readonly emittedLocks = new Map<string, { locked: boolean, at: number }>()
  private backfillAskedAt = 0
  /** when this peer last told the others how its backfill stands */
  private backfillToldAt = 0
  private readonly reports: PeerBackfillReports
  private readonly opt: Required<AccountsInit>

  constructor (init: AccountsInit, private readonly c: AccountsComponents) {
    this.opt = { lockPollMs: 2000, applyTimeoutMs: 20_000, backfillRetryMs: 30_000, backfillPageSize: 500, ldapInFlight: 16, ldapTransactions: false, userLimitBytes: DEFAULT_USER_LIMIT_BYTES, ...init }
    this.store = new AccountStore(c.db)
    this.reports = new PeerBackfillReports(this.store.db)
    this.local = c.localAccounts ?? (() => readLocalAccounts())
    this.consumer = new InboxConsumer({ service: ACCOUNTS_SERVICE, events: ACCOUNT_EVENTS, what: 'account' }, { ...c, handle: async (env) => { await this.handle(env) } })
  }

  async start (): Promise<void> {
    if (this.consumer.running) return
    await this.consumer.start()
    await this.store.db.insertInto('account_backfill').values({ id: 1 }).onConflict((oc) => oc.column('id').doNothing()).execute()
    const bf = await this.backfillStatus()
    if (bf.state === 'running') this.c.logger.info({ peer: bf.peer, received: bf.received, total: bf.total }, 'account backfill resumed where it stopped')
    // a crash between finishing and telling the others must not leave them showing "joining"
    if (bf.state !== 'waiting') await this.tellBackfill()
    await this.requeueMissingTrees()
    this.c.peers.on('admitted', this.onAdmitted)
    this.every(this.opt.lockPollMs, async () => { await this.watchLocks() }, 'lock watch')
    this.every(RECONCILE_MS, async () => { await this.reconcile() }, 'reconcile')
    this.every(Math.min(this.opt.backfillRetryMs, 5000), async () => { await this.backfillTick() }, 'backfill')
    this.consumer.drain()
    void this.requeueLdapDrift()
      .catch((err) => { this.c.logger.warn({ err: (err as Error).message }, 'LDAP not compared with the accounts at start; the next reconcile applies what is pending') })
      .then(async () => await this.reconcile())
      .catch((err) => { this.c.logger.warn({ err: (err as Error).message }, 'reconcile failed') })
    void this.backfillTick().catch(() => {})
  }

  async stop (): Promise<void> {
    this.c.peers.off('admitted', this.onAdmitted)
    for (const t of this.timers) clearInterval(t)
    this.timers = []
    await this.consumer.stop()
    await this.work.run(async () => {})
  }

  private every (ms: number, fn: () => Promise<void>, what: string): void {
    let busy = false
    const t = setInterval(() => {
      if (busy || !this.consumer.running) return
      busy = true
      fn().catch((err) => { this.c.logger.warn({ err: (err as Error).message }, `${what} failed`) }).finally(() => { busy = false })
    }, ms)
    t.unref()
    this.timers.push(t)
  }

  // a peer admitted later (introduced by another) must hear how our backfill stands too
  private readonly onAdmitted = (): void => {
    void this.backfillTick().catch(() => {})
    void this.tellBackfill().catch(() => {})
  }

  // ---- account events -------------------------------------------------------------

  private async handle (env: Envelope): Promise<void> {
    const from = env.meta.from
    if (from !== this.c.self && this.c.peers.active(from) === undefined) throw new NotFoundError(`${env.name} from ${from}, which is not an active peer`)
    switch (env.name) {
      case 'user-add': {
        const claim = checkClaimData(env.data, from)
        if (Math.abs(claim.createdAt - env.meta.iat * 1000) > CREATED_AT_SLACK_MS) throw new SchemaError('user-add createdAt is too far from the event time')
        await this.ingest([claim], [], [])
        return
      }
      case 'user-lock': await this.ingest([], [], [checkLockData(env.data, true, from)]); return
      case 'user-unlock': await this.ingest([], [], [checkLockData(env.data, false, from)]); return
      case 'user-del': await this.ingest([], [checkDeletion(env.data, from)], []); return
      case 'user-backfill-request': if (from !== this.c.self) await this.answerBackfill(from, env.data); return
      case 'user-backfill': if (from !== this.c.self) await this.onBackfillPage(from, env.data); return
      case 'user-backfill-state': if (from !== this.c.self) await this.reports.record(from, checkBackfillReport(env.data)); return
    }
  }

  // ---- applying claims, deletions and locks ---------------------------------------------

  /**
   * Record what arrived and make LDAP and the homes match. Idempotent: an
   * event seen twice changes nothing the second time. Returns the names
   * whose accounts were (re)applied.
   */
  async ingest (claims: ClaimData[], deletions: Array<{ name: string, at: number, by: string }>, locks: LockRow[]): Promise<Set<string>> {
    return await this.work.run(async () => {
      const names = new Set<string>([...claims.map((c) => c.name), ...deletions.map((d) => d.name), ...locks.map((l) => l.name)])
      if (names.size === 0) return names
      await this.saveDeletions(deletions)
      await this.saveLocks(locks)
      const touched = await this.saveClaims(claims, [...names])
      await this.materialize([...touched])
      return touched
    })
  }

  private async saveDeletions (deletions: Array<{ name: string, at: number, by: string }>): Promise<void> {
    if (deletions.length === 0) return
    await this.store.db.insertInto('account_deletions').values(deletions.map((d) => ({ name: d.name, deleted_at: new Date(d.at), by_peer: d.by })))
      .onConflict((oc) => oc.columns(['name', 'deleted_at']).doNothing()).execute()
  }

  private async saveLocks (locks: LockRow[]): Promise<void> {
    for (const l of locks) {
      await this.store.db.insertInto('account_locks').values({ name: l.name, locked: l.locked, at: new Date(l.at), by_peer: l.by, reason: l.reason })
        .onConflict((oc) => oc.column('name').doUpdateSet({ locked: l.locked, at: new Date(l.at), by_peer: l.by, reason: l.reason })
          // last writer wins: later time, then the larger peer uuid
          .where((eb) => eb.or([eb('account_locks.at', '<', new Date(l.at)), eb.and([eb('account_locks.at', '=', new Date(l.at)), eb('account_locks.by_peer', '<', l.by)])])))
        .execute()
      const e = this.emittedLocks.get(l.name)
      if (e !== undefined && e.locked === l.locked) this.emittedLocks.delete(l.name)
    }
  }

  /**
   * Insert new claims and compute every claim's state and number for `names`.
   * Fast path (almost always): the new numbered claims come after every
   * numbered claim in claim order and nothing changes side, so each takes
   * the first free probe. Otherwise the whole assignment is recomputed
   * (a race or a partition healed) and the moved users are renumbered.
   */
  private async saveClaims (incoming: ClaimData[], names: string[]): Promise<Set<string>> {
    const existing = await this.store.claimsOf(names)
    const have = new Set(existing.map(claimKey))
    const fresh: ClaimData[] = []
    for (const c of incoming) if (!have.has(claimKey(c))) { have.add(claimKey(c)); fresh.push(c) }
    const dels = await this.store.deletionsOf(names)
    const locks = await this.store.locksOf(names)
    const local = this.local()
    const localNames = new Set([...local.users, ...local.groups].map((a) => a.name))
    const localIds = new Set([...local.users, ...local.groups].map((a) => a.id))
    const all: Array<ClaimData & { uidNumber: number | null, state?: AccountState, isNew: boolean }> = [
      ...existing.map((r) => ({ ...r, isNew: false })), ...fresh.map((c) => ({ ...c, uidNumber: null, isNew: true }))
    ]
    const byName = groupBy(all, (c) => c.name)
    const lostKeys = new Set<string>()
    const deletedKeys = new Set<string>()
    for (const [name, cs] of byName) {
      const ns = nameState(cs, dels.get(name) ?? [])
      for (const k of ns.lost) lostKeys.add(k)
      for (const k of ns.deleted.keys()) deletedKeys.add(k)
    }
    // does anything that had a number lose it, or anything lost get one back?
    const flipped = all.some((c) => !c.isNew && (c.uidNumber !== null) === lostKeys.has(claimKey(c)))
    const needNumber = all.filter((c) => c.uidNumber === null && !lostKeys.has(claimKey(c))).sort(compareClaims)
    const last = await this.store.lastNumbered()
    const inOrder = needNumber.every((c) => last === null || compareClaims(c, last) > 0)
    let renumbered = new Set<string>()
    if (!flipped && inOrder) {
      const held = needNumber.length > 0 ? await this.store.heldUids() : new Set<number>()
      for (const c of needNumber) { c.uidNumber = firstFree(c.name, held); held.add(c.uidNumber) }
    }
    const stateOf = (c: ClaimData & { uidNumber: number | null }): AccountState => {
      const k = claimKey(c)
      if (lostKeys.has(k)) return 'lost'
      if (deletedKeys.has(k)) return 'deleted'
      if (localNames.has(c.name) || (c.uidNumber !== null && localIds.has(c.uidNumber))) return 'blocked'
      return locks.get(c.name)?.locked === true ? 'locked' : 'active'
    }
    const fast = !flipped && inOrder
    await this.c.db.transaction().execute(async (tx0) => {
      const tx = tx0.withTables<AccountsSchema>()
      const newByKey = new Map(all.filter((x) => x.isNew).map((x) => [claimKey(x), x]))
      const rows = fresh.map((c) => {
        const full = newByKey.get(claimKey(c)) as ClaimData & { uidNumber: number | null }
        return { name: c.name, origin: c.origin, created_at: new Date(c.createdAt), uid_number: fast ? full.uidNumber : null, gecos: c.gecos, shell: c.shell, keys: JSON.stringify(c.keys), state: stateOf(full), synced: false }
      })
      for (let i = 0; i < rows.length; i += 500) await tx.insertInto('accounts').values(rows.slice(i, i + 500)).execute()
      for (const c of all) {
        if (c.isNew) continue
        const s = stateOf(c)
        if (s !== c.state) {
          await tx.updateTable('accounts').set({ state: s, synced: false })
            .where('name', '=', c.name).where('origin', '=', c.origin).where('created_at', '=', new Date(c.createdAt)).execute()
        }
      }
      if (names.length > 0) await tx.updateTable('accounts').set({ synced: false }).where('name', 'in', names).execute()
    })
    if (!fast) renumbered = await this.reassignAll()
    if (fresh.some((c) => c.origin === this.c.self && lostKeys.has(claimKey(c)))) {
      for (const c of fresh.filter((x) => x.origin === this.c.self && lostKeys.has(claimKey(x)))) {
        this.c.logger.warn({ user: c.name }, 'account name conflict: another peer created this name first; the request made here lost and was not applied')
      }
    }
    for (const c of all.filter((x) => !x.isNew && x.origin === this.c.self && x.uidNumber !== null && lostKeys.has(claimKey(x)))) {
      this.c.logger.warn({ user: c.name }, 'account name conflict: an earlier claim from another peer arrived; the account made here is replaced by it')
    }
    return new Set([...names, ...renumbered])
  }

  /** Recompute every number from the whole claim log; returns the names whose number changed. */
  private async reassignAll (): Promise<Set<string>> {
    const claims = await this.store.allClaims()
    const dels = await this.store.allDeletions()
    const numbered: ClaimRow[] = []
    for (const [name, cs] of groupBy(claims, (c) => c.name)) {
      const ns = nameState(cs, dels.get(name) ?? [])
      for (const c of cs) if (!ns.lost.has(claimKey(c))) numbered.push(c)
    }
    const target = assignClaimUids(numbered)
    const changes = claims.filter((c) => (target.get(claimKey(c)) ?? null) !== c.uidNumber)
    if (changes.length === 0) return new Set()
    await this.c.db.transaction().execute(async (tx0) => {
      const tx = tx0.withTables<AccountsSchema>()
      const set = async (c: ClaimRow, uid: number | null): Promise<void> => {
        await tx.updateTable('accounts').set({ uid_number: uid, synced: false })
          .where('name', '=', c.name).where('origin', '=', c.origin).where('created_at', '=', new Date(c.createdAt)).execute()
      }
      // two steps, so the unique index never sees two claims on one number mid-way
      for (const c of changes) await set(c, null)
      for (const c of changes) {
        const to = target.get(claimKey(c)) ?? null
        if (to !== null) await set(c, to)
      }
    })
    for (const c of changes) {
      const to = target.get(claimKey(c)) ?? null
      if (c.uidNumber !== null && to !== null) this.c.logger.warn({ user: c.name, from: c.uidNumber, to }, 'account renumbered to the federation-wide assignment')
    }
    return new Set(changes.map((c) => c.name))
  }

  /** Make LDAP and /center/users match the database for these names; marks them synced. */
  private async materialize (names: string[]): Promise<void> {
    if (names.length === 0) return
    const claims = groupBy(await this.store.claimsOf(names), (c) => c.name)
    const bans = await this.store.bansOf(names)
    const done: string[] = []
    await this.c.directory.withClient(async (client) => {
      const fresh = await this.startFreshTransactions(client, names, claims, bans)
      // the users of the first transaction go first: their trees are made while the next one commits
      const order = [...fresh.keys(), ...names.filter((n) => !fresh.has(n))]
      let next = 0
      const worker = async (): Promise<void> => {
        while (next < order.length) {
          const name = order[next++] as string
          try {
            const f = fresh.get(name)
            if (f !== undefined && await f.committed) await this.applyTree(name, f.user, { action: 'added', before: null, locked: false, banned: false })
            else await this.materializeOne(client, name, claims.get(name) ?? [], bans.has(name))
            done.push(name)
          } catch (err) {
            this.c.logger.warn({ user: name, err: (err as Error).message, code: (err as { code?: string }).code }, 'account not applied yet; will retry')
          }
        }
      }
      await Promise.all(Array.from({ length: Math.min(this.opt.ldapInFlight, order.length) }, worker))
    })
    for (let i = 0; i < done.length; i += 1000) {
      await this.store.db.updateTable('accounts').set({ synced: true }).where('name', 'in', done.slice(i, i + 1000)).execute()
    }
  }

  /**
   * The backfill fast path: users that are plainly active (not locked, not
   * banned here) and wholly absent from LDAP are added in LDAP transactions
   * of TXN_USERS users, one database commit (one fsync) each instead of two
   * per user, committed one after another on a connection of their own.
   * Each user gets the promise of their transaction: true once committed,
   * false if it failed (it wrote nothing; its users then take the one-by-one
   * path, which says what was wrong).
   */
  private async startFreshTransactions (client: Client, names: string[], claims: Map<string, ClaimRow[]>, bans: Set<string>): Promise<Map<string, { user: NewUser, committed: Promise<boolean> }>> {
    const fresh = new Map<string, { user: NewUser, committed: Promise<boolean> }>()
    if (names.length < 2 || !this.opt.ldapTransactions) return fresh
    const candidates = new Map<string, NewUser>()
    for (const name of names) {
      const owner = (claims.get(name) ?? []).find((c) => c.state === 'active' || c.state === 'locked')
      if (owner === undefined || owner.state !== 'active' || owner.uidNumber === null || bans.has(name)) continue
      try {
        candidates.set(name, this.c.directory.validate({ name, uidNumber: owner.uidNumber, gecos: owner.gecos, shell: owner.shell, keys: owner.keys }))
      } catch { /* the one-by-one path reports it */ }
    }
    if (candidates.size < 2) return fresh
    const absent = await this.c.directory.absentWith(client, [...candidates.keys()])
    const users = [...candidates.values()].filter((u) => absent.has(u.name))
    let previous: Promise<unknown> = Promise.resolve()
    for (let i = 0; i < users.length; i += TXN_USERS) {
      const chunk = users.slice(i, i + TXN_USERS)
      const committed = previous.then(async () => await this.c.directory.addUsersInTransaction(chunk)).then(() => true, (err: Error) => {
        this.c.logger.debug({ users: chunk.length, err: err.message }, 'LDAP transaction not applied; adding these users one by one')
        return false
      })
      previous = committed
      for (const u of chunk) fresh.set(u.name, { user: u, committed })
    }
    return fresh
  }

  private async materializeOne (client: Client, name: string, claims: ClaimRow[], banned: boolean): Promise<void> {
    const owner = claims.find((c) => c.state === 'active' || c.state === 'locked')
    if (owner === undefined || owner.uidNumber === null) {
      if (claims.some((c) => c.state === 'blocked')) {
        this.c.logger.error({ user: name }, 'account not created here: its name or number belongs to a local user or group of this box')
        return
      }
      if (await this.c.directory.deleteUserWith(client, name)) this.c.logger.info({ user: name }, 'user removed from LDAP')
      if (claims.some((c) => c.state === 'deleted') && await this.removeTree(name)) this.c.logger.info({ user: name }, 'user directory removed')
      return
    }
    const user: NewUser = this.c.directory.validate({ name, uidNumber: owner.uidNumber, gecos: owner.gecos, shell: owner.shell, keys: owner.keys })
    const locked = owner.state === 'locked' || banned
    const { action, before } = await this.c.directory.putUserWith(client, user, locked)
    await this.applyTree(name, user, { action, before, locked, banned })
  }

  /**
   * The user's tree once their LDAP entry is right (`before`: the entry it
   * replaced, null for a new one): renumbered, quota'd, .ssh/authorized_keys.
   */
  private async applyTree (name: string, user: NewUser, change: { action: 'added' | 'changed' | 'unchanged', before: { uidNumber: number, keys: string[] } | null, locked: boolean, banned: boolean }): Promise<void> {
    const { action, before, locked, banned } = change
    const root = { root: this.opt.root }
    const keysChanged = before !== null && JSON.stringify(before.keys) !== JSON.stringify([...user.keys].sort())
    const moved = before !== null && before.uidNumber !== user.uidNumber
    if (moved) await rechownHome(root, name, before.uidNumber, user.uidNumber)
    await this.ensureQuotaTree(name, user.uidNumber)
    try {
      await ensureHome(root, name, user.uidNumber, user.keys, { rewriteKeys: keysChanged || moved })
    } catch (err) {
      // a user who filled their tree must not hold up their own lock or unlock: LDAP is already right
      if ((err as NodeJS.ErrnoException).code !== 'EDQUOT') throw err
      this.c.logger.warn({ user: name }, 'user tree is full (quota): .ssh/authorized_keys not rewritten here; the account change is applied')
    }
    if (action !== 'unchanged') this.c.logger.info({ user: name, uidNumber: user.uidNumber, action, locked, bannedHere: banned }, 'account applied')
  }

  /**
   * With a quota backend, a user tree that does not exist yet is made by the
   * backend (so it is a subvolume or carries its quota from the start);
   * ensureHome then adds .ssh through its no-symlink path. An existing tree is
   * left as it is: it was made before the backend was configured, and
   * `centerctl doctor` reports it.
   */
  private async ensureQuotaTree (name: string, uid: number): Promise<void> {
    const quota = this.c.quota
    if (quota === undefined || await homeExists({ root: this.opt.root }, name)) return
    await quota.ensureUserTree(name, uid, uid, this.opt.userLimitBytes)
    this.c.logger.info({ user: name, quota: quota.name, limitBytes: this.opt.userLimitBytes }, 'user tree created with its quota')
  }

  /**
   * At start: an account applied here whose /center/users/NAME is gone (moved
   * aside to be made again as a quota'd tree, or removed by mistake) is
   * applied again by the next reconcile, which makes the tree.
   */
  private async requeueMissingTrees (): Promise<void> {
    const missing: string[] = []
    for (const name of await this.store.heldNames()) if (!await homeExists({ root: this.opt.root }, name)) missing.push(name)
    if (missing.length === 0) return
    await this.store.markUnsynced(missing)
    this.c.logger.warn({ users: missing.slice(0, 20), count: missing.length }, 'user trees missing here are made again')
  }

  /**
   * At start: LDAP against the claim log. slapd runs back_mdb with
   * nometasync (`centerctl setup ldap`), so a power loss may undo its last
   * commit: an account applied here whose user or group entry is gone, or a
   * removed one whose entry is back, is applied again by the next reconcile.
   * Entries of names the claim log does not know are not ours and are left.
   */
  private async requeueLdapDrift (): Promise<void> {
    const { users, groups } = await this.c.directory.entryNames()
    const held = new Set(await this.store.heldNames())
    const missing = [...held].filter((n) => !users.has(n) || !groups.has(n))
    const extra = [...new Set([...users, ...groups])].filter((n) => !held.has(n))
    const known = new Set<string>()
    for (let i = 0; i < extra.length; i += 1000) for (const r of await this.store.claimsOf(extra.slice(i, i + 1000))) if (r.synced) known.add(r.name)
    if (missing.length + known.size === 0) return
    await this.store.markUnsynced([...missing, ...known])
    this.c.logger.warn({ missing: missing.slice(0, 20), leftover: [...known].slice(0, 20), count: missing.length + known.size }, 'LDAP differs from the accounts (an undone write?); applying them again')
  }

  /** A deleted user's tree goes by its backend (a subvolume cannot be rm'd), or as a plain directory. */
  private async removeTree (name: string): Promise<boolean> {
    const quota = this.c.quota
    if (quota === undefined || !await homeExists({ root: this.opt.root }, name)) return await removeHome({ root: this.opt.root }, name)
    try {
      await quota.removeUserTree(name)
      return true
    } catch (err) {
      if (!(err instanceof QuotaBackendError)) throw err
      // a plain directory from before the backend was configured
      return await removeHome({ root: this.opt.root }, name)
    }
  }

  /**
   * Apply whatever did not get applied (LDAP was down, the process died
   * mid-way). The names are read under the lock: read before it, they may be
   * those of a page being applied right then, which would be applied again
   * (that cost a backfill a fifth of its time at 54,000 accounts).
   */
  async reconcile (): Promise<number> {
    let n = 0
    for (;;) {
      const applied = await this.work.run(async () => {
        const names = await this.store.unsyncedNames(500)
        if (names.length > 0) await this.materialize(names)
        return names
      })
      if (applied.length === 0) return n
      n += applied.length
      const still = await this.store.unsyncedNames(500)
      if (still.length > 0 && still.every((x) => applied.includes(x))) return n
    }
  }

  // ---- lockouts spread -----------------------------------------------------------------

  /**
   * Compare the local LDAP's locks (ppolicy lockouts, or a sysadmin's
   * ldapmodify) with the agreed state, and tell every peer about a change.
   * It runs every couple of seconds for as long as centerd runs, so it reads
   * only what can differ: the entries locked in LDAP (a presence index on
   * pwdAccountLockedTime) and the accounts agreed locked (a partial index),
   * never every account.
   */
  async watchLocks (): Promise<void> {
    const events: Array<{ name: string, to: string, data: unknown }> = []
    await this.work.run(async () => {
      const ldapLocked = await this.c.directory.lockedUsers()
      const rows = await this.store.lockCandidates([...ldapLocked.keys()])
      const bans = await this.store.bansOf(rows.map((r) => r.name))
      const now = Date.now()
      for (const r of rows) {
        if (bans.has(r.name)) continue
        const inLdap = ldapLocked.has(r.name)
        const agreed = r.state === 'locked'
        if (inLdap === agreed) continue
        const pending = this.emittedLocks.get(r.name)
        if (pending !== undefined && pending.locked === inLdap && now - pending.at < 60_000) continue
        this.emittedLocks.set(r.name, { locked: inLdap, at: now })
        const reason = inLdap ? 'locked in LDAP here (ppolicy lockout after failed binds)' : 'unlocked in LDAP here'
        events.push({ name: inLdap ? 'user-lock' : 'user-unlock', to: '*', data: { name: r.name, at: now, reason } })
        this.c.logger.warn({ user: r.name, locked: inLdap }, inLdap ? 'lockout seen in LDAP; locking the account on every peer' : 'unlock seen in LDAP; unlocking on every peer')
      }
    })
    if (events.length > 0) await this.c.dispatcher.submit(ACCOUNTS_SERVICE, events)
  }

  // ---- backfill (RFC 3: a joining peer gets every account first) ---------------------------------

  async backfillStatus (): Promise<BackfillStatus> {
    const r = await this.store.db.selectFrom('account_backfill').selectAll().where('id', '=', 1).executeTakeFirst()
    if (r === undefined) return { state: 'waiting', peer: null, received: 0, total: 0, startedAt: null, finishedAt: null }
    // a page applied just before a crash is asked for again and counted twice: never show more than the total
    return { state: r.state, peer: r.peer, received: r.total > 0 ? Math.min(r.received, r.total) : r.received, total: r.total, startedAt: r.started_at, finishedAt: r.finished_at }
  }

  /** Ask an active peer for the next page unless done or a request is under way. */
  private async backfillTick (): Promise<void> {
    if (!this.consumer.running) return
    const r = await this.store.db.selectFrom('account_backfill').selectAll().where('id', '=', 1).executeTakeFirst()
    if (r === undefined || r.state === 'done') return
    if (Date.now() - this.backfillAskedAt < this.opt.backfillRetryMs) return
    const active = this.c.peers.activeList()
    const peer = active.find((p) => p.uuid === r.peer) ?? active[0]
    if (peer === undefined) return
    if (r.peer !== peer.uuid || r.state === 'waiting') {
      await this.store.db.updateTable('account_backfill').set({ peer: peer.uuid, state: 'running', started_at: r.started_at ?? new Date(), updated_at: new Date() }).where('id', '=', 1).execute()
      this.c.logger.info({ peer: peer.uuid, after: r.cursor }, 'account backfill started')
      await this.tellBackfill()
    }
    await this.askBackfill(peer.uuid, r.cursor)
  }

  /** Tell every peer how this peer's backfill stands (they show it as joining until done). */
  private async tellBackfill (): Promise<void> {
    const s = await this.backfillStatus()
    if (s.state === 'waiting') return
    this.backfillToldAt = Date.now()
    await this.c.dispatcher.submit(ACCOUNTS_SERVICE, [{ name: 'user-backfill-state', to: '*', data: { state: s.state, received: s.received, total: s.total, at: Date.now() } }])
  }

  /** What the other peers said of their backfill: joining or joined, by UUID. */
  async peerBackfill (): Promise<Map<string, PeerBackfillView>> { return await this.reports.all() }

  private async askBackfill (peer: string, after: AccountClaim | null): Promise<void> {
    this.backfillAskedAt = Date.now()
    await this.c.dispatcher.submit(ACCOUNTS_SERVICE, [{ name: 'user-backfill-request', to: peer, data: { after, limit: this.opt.backfillPageSize } }])
  }

  /** Answer with up to PAGES_PER_ANSWER consecutive pages in one submit: the joiner applies one while the next travels. */
  private async answerBackfill (from: string, data: unknown): Promise<void> {
    const d = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>
    let after = checkCursor(d.after)
    const limit = Math.max(1, Math.min(Number.isSafeInteger(d.limit) ? d.limit as number : 500, this.opt.backfillPageSize))
    const total = await this.store.countClaims()
    await this.reports.asked(from, total)
    const pages: Array<Record<string, unknown>> = []
    for (let i = 0; i < PAGES_PER_ANSWER; i++) {
      const page = await this.buildPage(after, limit)
      pages.push({ after, ...page, total, more: false })
      if (page.done) break
      after = page.next
    }
    pages.forEach((p, i) => { p.more = i < pages.length - 1 })
    await this.c.dispatcher.submit(ACCOUNTS_SERVICE, pages.map((data) => ({ name: 'user-backfill', to: from, data })))
  }

  private async buildPage (after: AccountClaim | null, limit: number): Promise<{ claims: ClaimData[], deletions: Array<{ name: string, at: number }>, locks: LockRow[], next: AccountClaim | null, done: boolean }> {
    const rows = await this.store.page(after, limit)
    const budget = this.opt.maxEventBytes - 4096
    const claims: ClaimData[] = []
    let size = 0
    for (const r of rows) {
      const c: ClaimData = { name: r.name, origin: r.origin, createdAt: r.createdAt, gecos: r.gecos, shell: r.shell, keys: r.keys }
      size += Buffer.byteLength(JSON.stringify(c)) + 1
      if (size > budget * 0.8 && claims.length > 0) break
      claims.push(c)
    }
    const names = [...new Set(claims.map((c) => c.name))]
    const dels = await this.store.deletionsOf(names)
    const locks = [...(await this.store.locksOf(names)).values()]
    const deletions = [...dels].flatMap(([name, ts]) => ts.map((at) => ({ name, at })))
    const lastClaim = claims[claims.length - 1]
    const next = lastClaim === undefined ? after : { name: lastClaim.name, origin: lastClaim.origin, createdAt: lastClaim.createdAt }
    return { claims, deletions, locks, next, done: claims.length === rows.length && rows.length < limit }
  }

  private async onBackfillPage (from: string, data: unknown): Promise<void> {
    const d = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>
    const r = await this.store.db.selectFrom('account_backfill').selectAll().where('id', '=', 1).executeTakeFirstOrThrow()
    const after = checkCursor(d.after)
    // an answer to an older request (sent again after a restart): the one for the current cursor counts
    if (r.state === 'done' || r.peer !== from || !sameCursor(after, r.cursor ?? null)) return
    if (!Array.isArray(d.claims) || !Array.isArray(d.deletions) || !Array.isArray(d.locks)) throw new SchemaError('user-backfill needs claims, deletions and locks arrays')
    const claims = d.claims.map((x) => checkClaimData(x))
    const deletions = d.deletions.map((x) => checkDeletion(x, from))
    const locks = d.locks.map((x) => { const l = x as Record<string, unknown>; return checkLockData(l, l?.locked === true, isUuid(l?.by) ? l.by : from) })
    const t0 = performance.now()
    await this.ingest(claims, deletions, locks)
    this.c.logger.debug({ claims: claims.length, ms: Math.round(performance.now() - t0), more: d.more === true }, 'backfill page applied')
    const next = checkCursor(d.next)
    const done = d.done === true
    const total = Number.isSafeInteger(d.total) ? d.total as number : 0
    await this.store.db.updateTable('account_backfill').set({
      cursor: next === null ? null : JSON.stringify(next), received: r.received + claims.length, total, updated_at: new Date(),
      ...(done ? { state: 'done' as const, finished_at: new Date() } : {})
    }).where('id', '=', 1).execute()
    if (done) {
      this.c.logger.info({ peer: from, accounts: r.received + claims.length }, 'account backfill done: this peer has every account')
      await this.tellBackfill()
      return
    }
    // the first page brings the total; after that, progress now and then
    if (r.total === 0 || Date.now() - this.backfillToldAt >= BACKFILL_TELL_MS) await this.tellBackfill()
    // more pages of this answer are on their way; ask again after the last one
    if (d.more === true) { this.backfillAskedAt = Date.now(); return }
    await this.askBackfill(from, next)
  }

  // ---- the admin side --------------------------------------------------------------------

  /** Validate everything, refuse a taken name, then send user-add to every peer and wait until it is applied here. */
  async add (req: AddUserRequest): Promise<UserView> {
    checkUsername(req.name, this.local)
    const gecos = req.gecos ?? ''
    checkGecos(gecos)
    const shell = req.shell ?? DEFAULT_SHELL
    checkShell(shell)
    if (!Array.isArray(req.keys) || req.keys.length === 0) throw new BadRequestError('at least one SSH public key is needed (--ssh-key)')
    const keys = parseSshPublicKeys(req.keys).map((k) => k.line)
    const owner = await this.owner(req.name)
    if (owner !== null) throw new ConflictError(`user "${req.name}" already exists (created on ${owner.origin} at ${new Date(owner.createdAt).toISOString()})`)
    const createdAt = Date.now()
    await this.c.dispatcher.submit(ACCOUNTS_SERVICE, [{ name: 'user-add', to: '*', data: { name: req.name, createdAt, gecos, shell, keys } }])
    const row = await this.waitFor(`user-add ${req.name}`, async () => {
      const rows = await this.store.claimsOf([req.name])
      const mine = rows.find((r) => r.origin === this.c.self && r.createdAt === createdAt)
      return mine !== undefined && (mine.synced || mine.state === 'lost' || mine.state === 'blocked') ? mine : null
    })
    if (row.state === 'lost') throw new ConflictError(`another peer created "${req.name}" first; this request lost the name`)
    return await this.view(row)
  }

  async lock (name: string, locked: boolean, reason = ''): Promise<UserView> {
    const owner = await this.mustOwner(name)
    const at = Math.max(Date.now(), owner.createdAt)
    await this.c.dispatcher.submit(ACCOUNTS_SERVICE, [{ name: locked ? 'user-lock' : 'user-unlock', to: '*', data: { name, at, reason: reason.slice(0, 200) } }])
    const row = await this.waitFor(`${locked ? 'lock' : 'unlock'} ${name}`, async () => {
      const o = await this.owner(name)
      return o !== null && o.synced && (o.state === 'locked') === locked ? o : null
    })
    return await this.view(row)
  }

  async del (name: string): Promise<{ name: string, deleted: true }> {
    const owner = await this.mustOwner(name)
    await this.c.dispatcher.submit(ACCOUNTS_SERVICE, [{ name: 'user-del', to: '*', data: { name, at: Math.max(Date.now(), owner.createdAt) } }])
    await this.waitFor(`user-del ${name}`, async () => {
      const rows = await this.store.claimsOf([name])
      return rows.every((r) => r.synced) && !rows.some((r) => r.state === 'active' || r.state === 'locked')
    })
    return { name, deleted: true }
  }

  /** Only this box refuses the user: LDAP lock here, nothing sent. */
  async ban (name: string, reason: string, banned: boolean): Promise<UserView | { name: string, bannedHere: boolean }> {
    checkUsername(name, () => ({ users: [], groups: [] }))
    if (banned) await this.store.db.insertInto('account_bans').values({ name, reason: reason.slice(0, 500) }).onConflict((oc) => oc.column('name').doUpdateSet({ reason: reason.slice(0, 500) })).execute()
    else await this.store.db.deleteFrom('account_bans').where('name', '=', name).execute()
    await this.work.run(async () => { await this.materialize([name]) })
    this.c.logger.warn({ user: name, reason }, banned ? 'user banned on this box only' : 'local ban lifted')
    const o = await this.owner(name)
    return o === null ? { name, bannedHere: banned } : await this.view(o)
  }

  async list (all = false): Promise<UserView[]> {
    let q = this.store.db.selectFrom('accounts').selectAll().orderBy('name').orderBy('created_at')
    if (!all) q = q.where('state', '!=', 'deleted')
    const claims = (await q.execute()).map(toClaimRow)
    const bans = await this.store.bansOf([...new Set(claims.map((c) => c.name))])
    const owners = new Map(claims.filter((c) => c.state !== 'lost' && c.state !== 'deleted').map((c) => [c.name, c]))
    return claims.map((c) => this.viewOf(c, bans.has(c.name), owners.get(c.name)))
  }

  async show (name: string): Promise<Record<string, unknown>> {
    checkUsername(name, () => ({ users: [], groups: [] }))
    const claims = await this.store.claimsOf([name])
    if (claims.length === 0) throw new NotFoundError(`no user "${name}"`)
    const bans = await this.store.bansOf([name])
    const owner = claims.find((c) => c.state !== 'lost' && c.state !== 'deleted')
    const lock = (await this.store.locksOf([name])).get(name) ?? null
    const ldap = await this.c.directory.getUser(name).catch((err) => ({ error: (err as Error).message }))
    return {
      ...(owner !== undefined ? this.viewOf(owner, bans.has(name), owner) : { name, state: 'deleted' }),
      lock: lock === null ? null : { locked: lock.locked, at: new Date(lock.at).toISOString(), by: lock.by, reason: lock.reason },
      claims: claims.map((c) => this.viewOf(c, bans.has(name), owner)),
      ldap
    }
  }

  async status (): Promise<Record<string, unknown>> {
    const r = await this.store.db.selectFrom('accounts').select(['state']).execute()
    const counts: Record<string, number> = {}
    for (const x of r) counts[x.state] = (counts[x.state] ?? 0) + 1
    return { accounts: counts, backfill: await this.backfillStatus() }
  }

  private async owner (name: string): Promise<ClaimRow | null> {
    return (await this.store.claimsOf([name])).find((c) => c.state === 'active' || c.state === 'locked' || c.state === 'blocked') ?? null
  }

  private async mustOwner (name: string): Promise<ClaimRow> {
    checkUsername(name, () => ({ users: [], groups: [] }))
    const o = await this.owner(name)
    if (o === null) throw new NotFoundError(`no user "${name}"`)
    return o
  }

  private async view (c: ClaimRow): Promise<UserView> {
    const bans = await this.store.bansOf([c.name])
    const owner = await this.owner(c.name)
    return this.viewOf(c, bans.has(c.name), owner ?? undefined)
  }

  private viewOf (c: ClaimRow, banned: boolean, owner: ClaimRow | undefined): UserView {
    return {
      name: c.name,
      uidNumber: c.uidNumber,
      state: c.state,
      origin: c.origin,
      createdAt: new Date(c.createdAt).toISOString(),
      gecos: c.gecos,
      shell: c.shell,
      keys: c.keys,
      bannedHere: banned,
      synced: c.synced,
      ...(c.state === 'lost' ? { lostTo: owner === undefined ? null : { origin: owner.origin, createdAt: new Date(owner.createdAt).toISOString() } } : {})
    }
  }

  private async waitFor<T> (what: string, fn: () => Promise<T | null | false>): Promise<T> {
    const end = Date.now() + this.opt.applyTimeoutMs
    for (;;) {
      const v = await fn()
      if (v !== null && v !== false) return v
      if (Date.now() > end) throw new AccountNotAppliedError(`${what} was sent to every peer but is not applied here yet (LDAP down?); it will be retried`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
}

function groupBy<T> (xs: readonly T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>()
  for (const x of xs) {
    const k = key(x)
    const list = m.get(k)
    if (list === undefined) m.set(k, [x])
    else list.push(x)
  }
  return m
}
