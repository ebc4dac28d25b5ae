import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { Database } from '../../src/db/index.js'
import { LdapDirectory, type NewUser } from '../../src/accounts/directory.js'
import { AccountsService } from '../../src/accounts/service.js'
import type { ClaimData } from '../../src/accounts/store.js'
import { createTestDatabase } from '../_util/pg.js'
import { slapdAvailability, startSlapd, type Slapd } from '../_util/slapd.js'
import { ed25519Line } from './_keys.js'
import { ldapUsers } from './_peers.js'

// The apply path of a backfill page (AccountsService.ingest) against real
// slapd, PostgreSQL and /center/users: new users go in LDAP transactions,
// and a transaction that fails leaves its users to the one-by-one path.
// The failure is injected (a directory whose transaction call throws once):
// a real slapd fails one only in a race we cannot time from a test.
const avail = slapdAvailability()
const skip = !avail.ok ? `slapd unavailable: ${avail.reason}` : process.getuid?.() !== 0 ? 'needs root (chown of /center/users)' : false
const ORIGIN = '00000000-0000-4000-8000-000000000002'

class FlakyDirectory extends LdapDirectory {
  failures = 0
  transactions = 0
  override async addUsersInTransaction (users: NewUser[]): Promise<void> {
    this.transactions++
    if (this.failures > 0) { this.failures--; throw new Error('injected: transaction aborted') }
    await super.addUsersInTransaction(users)
  }
}

describe('applying a backfill page', { skip }, () => {
  let slapd: Slapd
  let pgdb: Awaited<ReturnType<typeof createTestDatabase>>
  let database: Database
  let directory: FlakyDirectory
  let svc: AccountsService
  let dir: string
  const key = ed25519Line('page')
  const claims = (prefix: string, n: number): ClaimData[] =>
    Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}`, origin: ORIGIN, createdAt: Date.now() - 3600_000 + i, gecos: '', shell: '/bin/sh', keys: [key] }))

  before(async () => {
    slapd = await startSlapd({})
    pgdb = await createTestDatabase('center_ingest')
    dir = mkdtempSync(join(tmpdir(), 'cn3-ingest-'))
    const logger = pino({ level: 'silent' })
    database = Database.open({ url: pgdb.url, pgliteDir: '' }, { logger })
    await database.migrateToLatestOrThrow()
    directory = new FlakyDirectory({ url: slapd.url, baseDn: slapd.baseDn, bindDn: slapd.bindDn, bindPassword: slapd.bindPassword, ca: slapd.ca }, { logger })
    // ingest uses neither the dispatcher, the registry nor the peer directory
    const none = null as any
    svc = new AccountsService({ root: join(dir, 'center'), maxEventBytes: 64 * 1024 }, { db: database.db, self: '00000000-0000-4000-8000-000000000001', dispatcher: none, registry: none, peers: none, directory, logger })
  })

  after(async () => {
    await database?.close()
    await pgdb?.drop().catch(() => {})
    await slapd?.stop()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  const assertApplied = async (names: string[]): Promise<void> => {
    const users = await ldapUsers(slapd)
    for (const n of names) {
      const u = users.get(n)
      assert.ok(u !== undefined, `${n} in LDAP`)
      assert.equal(u.group, u.uidNumber, `${n} has its group`)
      assert.deepEqual(u.keys, [key])
      assert.ok(existsSync(join(dir, 'center', 'users', n, '.ssh', 'authorized_keys')), `${n} has a tree`)
    }
    const unsynced = await (database.db as any).selectFrom('accounts').select('name').where('synced', '=', false).execute()
    assert.deepEqual(unsynced, [])
  }

  test('a page of 450 new users: added in transactions of 100, each with group and tree', async () => {
    const page = claims('p', 450)
    await svc.ingest(page, [], [])
    assert.equal(directory.transactions, 5)
    await assertApplied(page.map((c) => c.name))
  })

  test('a transaction that fails: its users are added one by one, nothing is lost or doubled', async () => {
    directory.failures = 1
    const before = directory.transactions
    const page = claims('q', 250)
    await svc.ingest(page, [], [])
    assert.equal(directory.transactions - before, 3)
    await assertApplied(page.map((c) => c.name))
    assert.equal((await ldapUsers(slapd)).size, 700)
  })

  test('the same page again changes nothing and opens no transaction', async () => {
    const before = directory.transactions
    await svc.ingest(claims('q', 250), [], [])
    assert.equal(directory.transactions, before)
    assert.equal((await ldapUsers(slapd)).size, 700)
  })
})
