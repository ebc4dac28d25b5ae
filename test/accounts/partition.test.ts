import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { lstatSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createTestUser, joinPeers, joinPeersWaiting } from '../_util/peers.js'
import { slapdAvailability } from '../_util/slapd.js'
import { waitFor } from '../_util/wait.js'
import { candidateUid, homeSlot } from '../../src/accounts/uid.js'
import { ed25519Line } from './_keys.js'
import { allDns, ldapUsers, startAccountPeer, type AccountPeer } from './_peers.js'
import { CutProxy } from './_proxy.js'

// A partition between two peers (each behind a relay the test cuts), the
// same name created on both sides, and two different names that hash to the
// same uidNumber slot. After the partition heals every peer agrees on one
// owner and one number per name; the losing request is reported on the
// losing side, not dropped silently; nothing is left half-made.
const avail = slapdAvailability()
const skip = !avail.ok ? `slapd unavailable: ${avail.reason}` : process.getuid?.() !== 0 ? 'needs root (chown of /center/users)' : false

/** Two valid usernames whose home slots are equal (a birthday search over a few ten thousand names). */
function collidingNames (): [string, string] {
  const seen = new Map<number, string>()
  for (let i = 0; ; i++) {
    const n = `u${i.toString(36)}`
    const s = homeSlot(n)
    const other = seen.get(s)
    if (other !== undefined) return [other, n]
    seen.set(s, n)
  }
}

describe('accounts: a partition heals', { skip }, () => {
  const P: Record<string, AccountPeer> = {}
  const proxies: CutProxy[] = []
  let admin: Awaited<ReturnType<typeof createTestUser>>
  const keyA = ed25519Line('bob@a')
  const keyB = ed25519Line('bob@b')
  const delivery = '[delivery]\nretry_min_ms = 100\nretry_max_ms = 1000\n'

  before(async () => {
    admin = await createTestUser()
    for (const n of ['a', 'b']) {
      const proxy = await CutProxy.create()
      proxies.push(proxy)
      P[n] = await startAccountPeer(`p${n}`, delivery, proxy.port)
      proxy.target = P[n]!.peer.port
    }
    await joinPeers(P.a!.peer, P.b!.peer, admin.name)
  })

  after(async () => {
    for (const p of Object.values(P)) await p.destroy()
    for (const x of proxies) await x.close()
    await admin?.remove()
  })

  test('same name on both sides, and a uidNumber collision: all peers converge, the loser is told', async () => {
    const [n1, n2] = collidingNames()
    assert.equal(candidateUid(n1, 0), candidateUid(n2, 0))
    for (const x of proxies) x.partition()
    await waitFor('the link to drop', async () => !(await P.a!.peer.ctl('peer', 'list')).some((p: any) => p.connection === 'open'), 20_000, 200)
    const onA = await P.a!.peer.ctl('user', 'add', 'bob', '--ssh-key', keyA)
    const onA1 = await P.a!.peer.ctl('user', 'add', n1, '--ssh-key', keyA)
    await new Promise((resolve) => setTimeout(resolve, 20))
    const onB = await P.b!.peer.ctl('user', 'add', 'bob', '--ssh-key', keyB, '--gecos', 'Other Bob')
    const onB2 = await P.b!.peer.ctl('user', 'add', n2, '--ssh-key', keyB)
    // during the partition each side made its own, and the two names share a number
    assert.equal(onA1.uidNumber, onB2.uidNumber)
    assert.equal(onA.uidNumber, onB.uidNumber)
    for (const x of proxies) x.heal()

    for (const p of [P.a!, P.b!]) {
      await waitFor(`${p.name} to converge`, async () => {
        const u = await ldapUsers(p.slapd)
        return u.get('bob')?.keys.join() === keyA && u.get(n2)?.uidNumber === candidateUid(n2, 1) && u.get(n1)?.uidNumber === candidateUid(n1, 0)
      }, 30_000, 250)
    }
    for (const p of [P.a!, P.b!]) {
      const u = await ldapUsers(p.slapd)
      assert.deepEqual(u.get('bob'), { uid: 'bob', uidNumber: onA.uidNumber, gidNumber: onA.uidNumber, group: onA.uidNumber, keys: [keyA], locked: false, cn: 'bob', shell: '/bin/bash' }, p.name)
      assert.equal(u.get(n2)?.group, candidateUid(n2, 1), `${p.name}: the group moved with the user`)
      // one entry per name: nothing half-made
      assert.equal((await allDns(p.slapd)).filter((dn) => dn.startsWith('uid=bob,') || dn.startsWith('cn=bob,')).length, 2)
      const list = await p.peer.ctl('user', 'list')
      const bobs = list.filter((r: any) => r.name === 'bob')
      assert.deepEqual(bobs.map((r: any) => [r.origin, r.state]).sort(), [[P.a!.peer.uuid, 'active'], [P.b!.peer.uuid, 'lost']].sort(), `${p.name}: the losing request is listed`)
      assert.equal(bobs.find((r: any) => r.state === 'lost').lostTo.origin, P.a!.peer.uuid)
    }
    // B's sysadmin is told; B's bob now has A's key in their directory, owned by the agreed numbers
    assert.ok(P.b!.peer.logs().some((l) => l.msg?.includes('account name conflict') && l.user === 'bob'), 'the conflict is logged on B')
    assert.ok(P.b!.peer.logs().some((l) => l.msg?.includes('renumbered') && l.user === n2))
    assert.equal(readFileSync(join(P.b!.root, 'users', 'bob', '.ssh', 'authorized_keys'), 'utf8').trim(), keyA)
    assert.equal(lstatSync(join(P.b!.root, 'users', n2, '.ssh', 'authorized_keys')).uid, candidateUid(n2, 1))
    assert.equal(lstatSync(join(P.b!.root, 'users', n2)).uid, candidateUid(n2, 1))
  })

  test('a third peer joining afterwards gets the same owners and numbers (backfill)', async () => {
    const c = P.c = await startAccountPeer('pc', delivery)
    // as a sysadmin joins: `peer join --wait` stays until approved and every account is here
    const join = await joinPeersWaiting(P.a!.peer, c.peer, admin.name)
    assert.equal(join.code, 0, join.stderr)
    assert.match(join.stderr, new RegExp(`approved: ${P.a!.peer.uuid}`))
    assert.match(join.stderr, /backfill done: \d+ accounts from [0-9a-f-]{36}; this box is a full peer/)
    assert.equal((await c.peer.ctl('user', 'backfill')).state, 'done', 'the command returned only once the backfill was done')
    // the others show C as joined once it said so (it was "joining" before: backfill.test)
    for (const n of ['a', 'b'] as const) {
      await waitFor(`${n} to show C as joined`, async () => (await P[n]!.peer.ctl('peer', 'list')).find((p: any) => p.uuid === c.peer.uuid)?.accounts === 'joined', 20_000, 250)
    }
    const ref = await ldapUsers(P.a!.slapd)
    await waitFor('C to have every account', async () => (await ldapUsers(c.slapd)).size === ref.size, 20_000, 250)
    assert.deepEqual(await ldapUsers(c.slapd), ref)
  })
})
