import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createTestUser } from '../_util/peers.js'
import { startInProcessPeer, refusals, type InProcessPeer } from '../_util/inproc.js'
import { waitFor } from '../_util/wait.js'

// RFC 3's repeated challenge: the existing sysadmin may demand more than one
// secret file before approving. Also: a request can be rejected, and a secret
// file cannot be reused by another box.
let a: InProcessPeer
let b: InProcessPeer
let c: InProcessPeer
let user: Awaited<ReturnType<typeof createTestUser>>

before(async () => {
  user = await createTestUser()
  a = await startInProcessPeer('ch-a')
  b = await startInProcessPeer('ch-b')
  c = await startInProcessPeer('ch-c')
})

after(async () => {
  await a?.stop()
  await b?.stop()
  await c?.stop()
  await user?.remove()
})

async function joinWith (newcomer: InProcessPeer, inv: Awaited<ReturnType<InProcessPeer['daemon']['ctx']['join']['invite']>>): Promise<any> {
  const secret = readFileSync(inv.path, 'utf8').trim()
  return await newcomer.daemon.ctx.join.join({ peer: inv.address, uuid: inv.uuid, publicKey: inv.publicKey, admin: user.name, secretFile: inv.secretFile, secret })
}

test('the invitation file is 0600, owned by the invited user, in their home', async () => {
  const inv = await a.daemon.ctx.join.invite(user.name)
  const { statSync } = await import('node:fs')
  const st = statSync(inv.path)
  assert.equal(st.mode & 0o777, 0o600)
  assert.equal(inv.path.startsWith(user.home + '/'), true)
  assert.match(readFileSync(inv.path, 'utf8').trim(), /^[0-9a-f]{64}$/)
  await assert.rejects(a.daemon.ctx.join.invite('root;rm'), (err: any) => err.code === 'bad-request')
  await assert.rejects(a.daemon.ctx.join.invite('nosuchuserhere'), (err: any) => err.code === 'not-found')
})

test('with two proofs demanded, approval waits for the second secret file', async () => {
  const first = await a.daemon.ctx.join.invite(user.name, 2)
  const r1 = await joinWith(b, first)
  assert.deepEqual(r1, { state: 'pending', proofs: 1, proofsNeeded: 2 })
  await assert.rejects(a.daemon.ctx.join.approve(b.uuid), (err: any) => err.code === 'conflict' && /proved 1 of 2/.test(err.message))
  const second = await a.daemon.ctx.join.invite(user.name)
  const r2 = await joinWith(b, second)
  assert.deepEqual(r2, { state: 'pending', proofs: 2, proofsNeeded: 2 })
  const ok = await a.daemon.ctx.join.approve(b.uuid)
  assert.equal(ok.delivered, true)
  await waitFor('the link', () => a.daemon.ctx.links.get(b.uuid)?.state === 'open' && b.daemon.ctx.links.get(a.uuid)?.state === 'open')
})

test('a secret file used by one box cannot be used by another', async () => {
  const inv = await a.daemon.ctx.join.invite(user.name)
  await joinWith(c, inv)
  const before = refusals(a, 'bad-secret').length
  const secret = readFileSync(inv.path, 'utf8').trim()
  // b tries the same file (it is admitted already, but the rule is about the file)
  await assert.rejects(b.daemon.ctx.join.join({ peer: inv.address, uuid: inv.uuid, publicKey: inv.publicKey, admin: user.name, secretFile: inv.secretFile, secret }), (err: any) => err.code === 'bad-secret')
  assert.equal(refusals(a, 'bad-secret').length, before + 1)
})

test('a rejected request cannot be approved and makes no peer', async () => {
  await a.daemon.ctx.join.reject(c.uuid)
  await assert.rejects(a.daemon.ctx.join.approve(c.uuid), (err: any) => err.code === 'conflict')
  assert.equal(a.daemon.ctx.peers.get(c.uuid), undefined)
  const reqs = await a.daemon.ctx.join.requests()
  assert.equal(reqs.find((r) => r.uuid === c.uuid)?.state, 'rejected')
})
