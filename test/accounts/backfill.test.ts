import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { loadConfig } from '../../src/config/index.js'
import { assignClaimUids, claimKey } from '../../src/accounts/claims.js'
import type { AccountsSchema } from '../../src/accounts/store.js'
import { createTestUser, joinPeers } from '../_util/peers.js'
import { slapdAvailability } from '../_util/slapd.js'
import { waitFor } from '../_util/wait.js'
import { ed25519Line } from './_keys.js'
import { ldapUsers, startAccountPeer, type AccountPeer } from './_peers.js'
import { sample } from '../_util/metrics.js'

// RFC 3: a peer joining a network gets every account before it counts as a
// full peer. A has 2,000 accounts; D joins, is killed with SIGKILL halfway
// through the backfill, restarts, and ends with all 2,000 in its LDAP, with
// A's uidNumbers, and no account twice.
const avail = slapdAvailability()
const skip = !avail.ok ? `slapd unavailable: ${avail.reason}` : process.getuid?.() !== 0 ? 'needs root (chown of /center/users)' : false
const N = 2000

describe('accounts: backfill of a joining peer', { skip }, () => {
  let a: AccountPeer
  let d: AccountPeer
  let admin: Awaited<ReturnType<typeof createTestUser>>
  const expected = new Map<string, number>()

  before(async () => {
    admin = await createTestUser()
    // small events on A: about 25 accounts per backfill page, so there is a "halfway" to kill D at
    a = await startAccountPeer('bfa', '[limits]\nmax_event_bytes = 8192\n')
    d = await startAccountPeer('bfd')
    // 2,000 `user add`s would take minutes through centerctl (each waits for its
    // own LDAP write), and the add path has its own tests: write A's claim log
    // directly, with the numbers the scheme gives, marked applied.
    const url = loadConfig({ configPath: a.peer.configPath }).database.url as string
    const db = new Kysely<AccountsSchema>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }) })
    const t0 = Date.now() - 3600_000
    const claims = Array.from({ length: N }, (_, i) => ({ name: `user${i}`, origin: a.peer.uuid, createdAt: t0 + i }))
    const uids = assignClaimUids(claims)
    const key = ed25519Line('bulk')
    const rows = claims.map((c) => ({ name: c.name, origin: c.origin, created_at: new Date(c.createdAt), uid_number: uids.get(claimKey(c)) as number, gecos: '', shell: '/bin/sh', keys: JSON.stringify([key]), state: 'active' as const, synced: true }))
    for (let i = 0; i < rows.length; i += 500) await db.insertInto('accounts').values(rows.slice(i, i + 500)).execute()
    await db.destroy()
    for (const c of claims) expected.set(c.name, uids.get(claimKey(c)) as number)
  })

  after(async () => {
    await d?.destroy()
    await a?.destroy()
    await admin?.remove()
  })

  test('2,000 accounts arrive in D\'s LDAP with A\'s numbers; a kill -9 halfway resumes without duplicates', async () => {
    await joinPeers(a.peer, d.peer, admin.name)
    const mid = await waitFor('D halfway through the backfill', async () => {
      const s = await d.peer.ctl('user', 'backfill')
      return s.state === 'running' && s.received >= 300 && s.received < N - 300 ? s : null
    }, 120_000, 50)
    const seen = (await a.peer.ctl('peer', 'list')).find((p: any) => p.uuid === d.peer.uuid)
    assert.match(String(seen?.accounts), /^joining \d+\/2000$/, 'A shows D as joining while its backfill runs')
    await d.peer.kill()
    assert.ok(mid.total === N, `the total is A's account count (${String(mid.total)})`)
    await d.peer.start()
    assert.ok(d.peer.logs().some((l) => l.msg === 'account backfill resumed where it stopped' && l.received >= 300), 'the restart resumed from its cursor')
    await waitFor('backfill done on D', async () => (await d.peer.ctl('user', 'backfill')).state === 'done', 180_000, 500)
    const m = await d.peer.metrics()
    assert.equal(sample(m, 'center_account_backfill_done'), 1, 'D\'s /metrics says the backfill is done')
    assert.equal(sample(m, 'center_account_backfill_received'), N)
    await waitFor('A to show D as joined', async () => (await a.peer.ctl('peer', 'list')).find((p: any) => p.uuid === d.peer.uuid)?.accounts === 'joined', 20_000, 250)
    await waitFor('every account applied in D\'s LDAP', async () => (await ldapUsers(d.slapd)).size === N, 60_000, 500)
    const got = await ldapUsers(d.slapd)
    for (const [name, uid] of expected) {
      const u = got.get(name)
      assert.equal(u?.uidNumber, uid, name)
      assert.equal(u?.group, uid, name)
    }
    const list = await d.peer.ctl('user', 'list')
    assert.equal(list.length, N, 'one claim row per account: nothing twice')
    assert.equal(new Set(list.map((r: any) => r.name)).size, N)
    assert.ok(list.every((r: any) => r.state === 'active' && r.origin === a.peer.uuid))
  })
})
