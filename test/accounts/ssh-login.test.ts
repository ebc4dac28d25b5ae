import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createTestUser, joinPeers } from '../_util/peers.js'
import { Netns, netnsUnsupported } from '../_util/netns.js'
import { slapdAvailability } from '../_util/slapd.js'
import { waitFor } from '../_util/wait.js'
import { startAccountPeer, type AccountPeer } from './_peers.js'
import { sshHostUnsupported, sshLogin, startSshHost, type SshHost } from './_sshhost.js'

// Issue 3 acceptance, the login path end to end: three hosts in network
// namespaces (HARNESS.md §2), each with its own centerd, slapd, nslcd and
// sshd (§3, overlay root). A user made on A logs in by SSH with their key on
// B and C; a lock on B refuses logins on all three; `user del` removes the
// name from NSS everywhere. The SSH client is the real OpenSSH client, run
// from another host's namespace.
const LIMIT_MS = 10_000
const avail = slapdAvailability()
const skip = !avail.ok
  ? `slapd unavailable: ${avail.reason}`
  : netnsUnsupported() ?? sshHostUnsupported() ?? false

const nsswitchHash = (): string => createHash('sha256').update(readFileSync('/etc/nsswitch.conf')).digest('hex')

describe('SSH logins of a center user on three namespaced peers', { skip }, () => {
  let net: Netns
  const P: Record<string, AccountPeer> = {}
  const H: Record<string, SshHost> = {}
  let admin: Awaited<ReturnType<typeof createTestUser>>
  let keyFile = ''
  let pub = ''
  let machineNsswitch = ''
  const names = ['a', 'b', 'c']
  // log in to `to` from the next host along (the client is never on the target itself)
  const from = (to: string): string => names[(names.indexOf(to) + 1) % names.length] as string
  const login = async (to: string): Promise<{ code: number, stdout: string, stderr: string }> => await sshLogin(net, from(to), H[to] as SshHost, 'alice', keyFile)

  // the set-up has many parts; a failure names the one that failed (CI shows only the message)
  const step = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn()
    } catch (err) {
      throw new Error(`set-up step "${what}" failed: ${(err as Error).message}`, { cause: err })
    }
  }

  before(async () => {
    machineNsswitch = nsswitchHash()
    net = await step('network namespaces', async () => await Netns.create(names, 'cn3s'))
    admin = await step('test user', async () => await createTestUser())
    for (const n of names) {
      P[n] = await step(`centerd and slapd on ${n}`, async () => await startAccountPeer(n, '', undefined, { netns: { net, host: n } }))
      H[n] = await step(`nslcd and sshd on ${n}`, async () => await startSshHost(net, n, P[n] as AccountPeer))
    }
    await step('A and B join', async () => { await joinPeers(P.a!.peer, P.b!.peer, admin.name) })
    await step('A and C join', async () => { await joinPeers(P.a!.peer, P.c!.peer, admin.name) })
    await step('B and C connect', async () => await waitFor('B and C to connect', async () => (await P.b!.peer.ctl('peer', 'list')).some((p: any) => p.uuid === P.c!.peer.uuid && p.connection === 'open'), 30_000, 250))
    keyFile = join(H.a!.dir, 'alice_key')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'alice@laptop', '-f', keyFile])
    pub = readFileSync(`${keyFile}.pub`, 'utf8').trim()
  })

  after(async () => {
    for (const h of Object.values(H)) await h.destroy().catch(() => {})
    for (const p of Object.values(P)) await p.destroy().catch(() => {})
    await net?.destroy()
    await admin?.remove()
  })

  test('before any account: alice is unknown to NSS and refused by sshd on every host', async () => {
    for (const n of names) {
      assert.equal(await H[n]!.getent('alice'), '', n)
      const r = await login(n)
      assert.equal(r.code, 255, `${n}: ${r.stderr}`)
      assert.match(r.stderr, /Permission denied/)
    }
  })

  test('user add on A: alice logs in with her key on B and C within 10 s (and on A)', async () => {
    const t0 = Date.now()
    const r = await P.a!.peer.ctl('user', 'add', 'alice', '--ssh-key', pub, '--gecos', 'Alice Example')
    for (const n of ['b', 'c', 'a']) {
      await waitFor(`alice to log in on ${n}`, async () => (await login(n)).stdout === 'alice', LIMIT_MS - (Date.now() - t0), 100)
      const line = await H[n]!.getent('alice')
      // name, uid, gid, gecos from this host's LDAP through nslcd (the password field is nslcd's '*')
      const f = line.split(':')
      assert.deepEqual([f[0], f[2], f[3], f[4]], ['alice', String(r.uidNumber), String(r.uidNumber), 'Alice Example'], n)
    }
    console.log(`# add on A -> SSH login works on B, C and A after ${Date.now() - t0} ms`)
    // a key she does not hold gets nothing
    const other = join(H.a!.dir, 'mallory_key')
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other])
    const wrong = await sshLogin(net, 'a', H.b!, 'alice', other)
    assert.equal(wrong.code, 255)
    assert.match(wrong.stderr, /Permission denied/)
  })

  test('user lock on B: SSH login refused on A, B and C within 10 s; unlock lets her in again', async () => {
    const t0 = Date.now()
    const r = await P.b!.peer.ctl('user', 'lock', 'alice', '--reason', 'ssh test')
    assert.equal(r.state, 'locked')
    for (const n of names) {
      await waitFor(`alice refused on ${n}`, async () => (await login(n)).code === 255, LIMIT_MS - (Date.now() - t0), 100)
      // the nslcd filter hides a locked user from NSS; sshd then calls her an invalid user
      assert.equal(await H[n]!.getent('alice'), '', `${n}: locked alice is hidden from NSS`)
    }
    console.log(`# lock on B -> refused on A, B and C after ${Date.now() - t0} ms`)
    assert.match(H.c!.log(), /Invalid user alice/)
    const t1 = Date.now()
    await P.c!.peer.ctl('user', 'unlock', 'alice')
    for (const n of names) await waitFor(`alice back on ${n}`, async () => (await login(n)).stdout === 'alice', LIMIT_MS - (Date.now() - t1), 100)
  })

  test('user del: the name is gone from NSS everywhere and SSH refuses it', async () => {
    const t0 = Date.now()
    await P.a!.peer.ctl('user', 'del', 'alice')
    for (const n of names) {
      await waitFor(`alice gone on ${n}`, async () => await H[n]!.getent('alice') === '', LIMIT_MS - (Date.now() - t0), 100)
      const r = await login(n)
      assert.equal(r.code, 255, `${n}: ${r.stderr}`)
      assert.equal((await P[n]!.peer.ctl('user', 'list')).some((u: any) => u.name === 'alice'), false, `${n} lists no alice`)
    }
  })

  test("the machine's own /etc/nsswitch.conf was never touched, and NSS outside the hosts knows no alice", () => {
    assert.equal(nsswitchHash(), machineNsswitch)
    let known = true
    try { execFileSync('getent', ['passwd', 'alice'], { stdio: 'ignore' }) } catch { known = false }
    assert.equal(known, false)
  })
})
