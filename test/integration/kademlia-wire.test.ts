import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { nodeIdOf } from '../../src/peer-table/id.js'
import { PEERS_SERVICE } from '../../src/peers/network.js'
import { createTestUser } from '../_util/peers.js'
import { joinInProcess, startInProcessPeer, type InProcessPeer } from '../_util/inproc.js'
import { waitFor } from '../_util/wait.js'

// Kademlia FIND_NODE over the dispatcher between live daemons (protocol.md
// §8.8): A and C both joined B (greeting = manual, the default, so they never
// met). A's lookups ask B with a signed, encrypted kad-find-node event and
// get B's contacts back in kad-nodes.
let a: InProcessPeer
let b: InProcessPeer
let c: InProcessPeer
let user: Awaited<ReturnType<typeof createTestUser>>

before(async () => {
  user = await createTestUser()
  a = await startInProcessPeer('kad-a')
  b = await startInProcessPeer('kad-b')
  c = await startInProcessPeer('kad-c')
  await joinInProcess(b, a, user.name)
  await joinInProcess(b, c, user.name)
})

after(async () => {
  await a?.stop()
  await b?.stop()
  await c?.stop()
  await user?.remove()
})

test('each table holds exactly the admitted peers', () => {
  assert.deepEqual(a.daemon.ctx.network.lookup.table.all().map((x) => x.uuid), [b.uuid])
  assert.deepEqual(b.daemon.ctx.network.lookup.table.all().map((x) => x.uuid).sort(), [a.uuid, c.uuid].sort())
})

test('a lookup for an admitted peer finds it', async () => {
  const r = await a.daemon.ctx.network.lookup.findNode(b.uuid)
  assert.equal(r.found?.uuid, b.uuid)
  assert.equal(r.hops, 0, 'B was in A\'s own table')
})

test('A learns of C from B\'s answer, but only ever sends to admitted peers', async () => {
  const r = await a.daemon.ctx.network.lookup.findNode(c.uuid)
  assert.equal(r.hops, 1, 'the first peer asked (B) named C')
  assert.equal(r.found, undefined, 'C never answered: A may not send it events')
  assert.equal(r.failed, 1, 'the request to C was refused locally')
  assert.deepEqual(r.closest.map((x) => x.uuid), [b.uuid])
  // nothing a lookup hears of enters the table
  assert.deepEqual(a.daemon.ctx.network.lookup.table.all().map((x) => x.uuid), [b.uuid])
  const kadIn = b.logs.filter((l) => l.msg === 'peer event refused' && /kad-/.test(String(l.event)))
  assert.equal(kadIn.length, 0, 'B took the requests')
})

test('an answer nobody asked for is dropped; a malformed request is refused: schema', async () => {
  const seen = a.logs.length
  const id = 'ab'.repeat(16)
  // the test plays a confused B: the daemon itself answers only requests it got
  await b.daemon.ctx.dispatcher.submit(PEERS_SERVICE, [{ name: 'kad-nodes', to: a.uuid, data: { id, contacts: [] } }])
  await a.daemon.ctx.dispatcher.submit(PEERS_SERVICE, [{ name: 'kad-find-node', to: b.uuid, data: { id: 'zz', target: Buffer.from(nodeIdOf(c.uuid)).toString('hex') } }])
  // an unsolicited answer is ignored; a malformed request is refused on B
  await waitFor('B to refuse the malformed request', () => b.logs.some((l) => l.msg === 'peer event refused' && l.event === 'kad-find-node' && l.code === 'schema'), 20_000)
  assert.ok(!a.logs.slice(seen).some((l) => l.msg === 'peer event refused' && l.event === 'kad-nodes'), 'an answer nobody waits for is dropped quietly')
})
