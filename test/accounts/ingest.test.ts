import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { LdapDirectory, type NewUser } from '../../src/accounts/directory.js'
import { slapdAvailability } from '../_util/slapd.js'
import { waitFor } from '../_util/wait.js'
import { ed25519Line } from './_keys.js'
import { ldapUsers } from './_peers.js'
import { pageClaims, startIngestRig, type IngestRig } from './_ingest.js'

// The apply path of a backfill page (AccountsService.ingest) against real
// slapd, PostgreSQL and /center/users: new users go in LDAP transactions,
// and a transaction that fails leaves its users to the one-by-one path.
// The failure is injected (a directory whose transaction call throws once):
// a real slapd fails one only in a race we cannot time from a test.
const avail = slapdAvailability()
const skip = !avail.ok ? `slapd unavailable: ${avail.reason}` : process.getuid?.() !== 0 ? 'needs root (chown of /center/users)' : false

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
  let rig: IngestRig<FlakyDirectory>
  const key = ed25519Line('page')
  const claims = (prefix: string, n: number): ReturnType<typeof pageClaims> => pageClaims(prefix, n, key)

  before(async () => { rig = await startIngestRig({ directory: (init, c) => new FlakyDirectory(init, c) }) })
  after(async () => { await rig?.stop() })

  const assertApplied = async (names: string[]): Promise<void> => {
    const users = await ldapUsers(rig.slapd)
    for (const n of names) {
      const u = users.get(n)
      assert.ok(u !== undefined, `${n} in LDAP`)
      assert.equal(u.group, u.uidNumber, `${n} has its group`)
      assert.deepEqual(u.keys, [key])
      assert.ok(existsSync(join(rig.root, 'users', n, '.ssh', 'authorized_keys')), `${n} has a tree`)
    }
    const unsynced = await (rig.database.db as any).selectFrom('accounts').select('name').where('synced', '=', false).execute()
    assert.deepEqual(unsynced, [])
  }

  test('a page of 450 new users: added in transactions of 100, each with group and tree', async () => {
    const page = claims('p', 450)
    await rig.svc.ingest(page, [], [])
    assert.equal(rig.directory.transactions, 5)
    await assertApplied(page.map((c) => c.name))
  })

  test('a transaction that fails: its users are added one by one, nothing is lost or doubled', async () => {
    rig.directory.failures = 1
    const before = rig.directory.transactions
    const page = claims('q', 250)
    await rig.svc.ingest(page, [], [])
    assert.equal(rig.directory.transactions - before, 3)
    await assertApplied(page.map((c) => c.name))
    assert.equal((await ldapUsers(rig.slapd)).size, 700)
  })

  test('a reconcile that starts while a page is being applied leaves that page to its ingest', async () => {
    const page = claims('r', 300)
    const names = page.map((c) => c.name)
    const db = rig.database.db as any
    const unsynced = async (): Promise<number> => (await db.selectFrom('accounts').select('name').where('synced', '=', false).where('name', 'in', names).execute()).length
    const applying = rig.svc.ingest(page, [], [])
    // the page's rows are saved unsynced before its LDAP work: what a reconcile tick reads then
    await waitFor('the page saved and not yet applied', async () => (await unsynced()) > 0, 10_000, 2)
    const reconciled = await rig.svc.reconcile()
    await applying
    assert.equal(reconciled, 0, 'reconcile applied the page again after its ingest had')
    await assertApplied(names)
  })

  test('the same page again changes nothing and opens no transaction', async () => {
    const before = rig.directory.transactions
    await rig.svc.ingest(claims('q', 250), [], [])
    assert.equal(rig.directory.transactions, before)
    assert.equal((await ldapUsers(rig.slapd)).size, 1000)
  })
})
