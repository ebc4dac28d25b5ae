import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  createKademlia, createMemoryNetwork, createPeerTable, NotStartedError, type KadRpcHandler
} from '../../src/peer-table/index.js'
import { testUuid, wireOf } from './_testnet.js'

const timersNow = (): number => process.getActiveResourcesInfo().filter(r => r === 'Timeout').length

/** A peer whose whole table is dead: every request hangs until its timeout. */
function lonelyPeer (requestTimeout: number) {
  const net = createMemoryNetwork()
  const uuid = testUuid(0, 'lonely')
  const table = createPeerTable({}, { self: { uuid } })
  for (let i = 1; i <= 10; i++) table.add(wireOf(testUuid(i, 'dead')))
  const none: KadRpcHandler = { handleFindNode: () => [], handleFindValue: () => ({ contacts: [] }), handlePing: () => {} }
  const transport = net.join(wireOf(uuid), none)
  const kad = createKademlia({ requestTimeout }, { table, transport })
  return { kad, table }
}

test('abort while a lookup is pending rejects promptly and leaves no timers', async () => {
  const { kad, table } = lonelyPeer(60_000)
  await kad.start()
  const before = timersNow()
  const ctl = new AbortController()
  const pending = kad.findNode(table.self.id, { signal: ctl.signal })
  await sleep(10)
  assert.ok(timersNow() > before, 'requests are waiting on their timeouts')
  const reason = new Error('user gave up')
  const t0 = performance.now()
  ctl.abort(reason)
  await assert.rejects(pending, (err) => err === reason)
  assert.ok(performance.now() - t0 < 50, 'rejected promptly')
  assert.equal(timersNow(), before, 'no request timer left behind')
  await kad.stop()
})

test('stop() while a lookup is pending rejects it with NotStartedError and clears timers', async () => {
  const { kad, table } = lonelyPeer(60_000)
  await kad.start()
  const before = timersNow()
  const pending = kad.findNode(table.self.id)
  await sleep(5)
  await kad.stop()
  await assert.rejects(pending, (err: Error) => err instanceof NotStartedError && err.name === 'NotStartedError')
  assert.equal(timersNow(), before)
})

test('an already aborted signal rejects at once; lookups need start(); start/stop are idempotent', async () => {
  const { kad, table } = lonelyPeer(60_000)
  await assert.rejects(kad.findNode(table.self.id), NotStartedError)
  await kad.start()
  await kad.start()
  const reason = new Error('already')
  await assert.rejects(kad.findNode(table.self.id, { signal: AbortSignal.abort(reason) }), (err) => err === reason)
  await kad.stop()
  await kad.stop()
  await assert.rejects(kad.findNode(table.self.id), NotStartedError)
})

test('per-request timeouts end a lookup over dead peers with nothing found', async () => {
  const { kad, table } = lonelyPeer(30)
  await kad.start()
  const before = timersNow()
  const res = await kad.findNode(table.self.id)
  assert.equal(res.found, undefined)
  assert.equal(res.closest.length, 0)
  assert.equal(res.failed, 10)
  assert.equal(res.queried, 10)
  assert.equal(timersNow(), before)
  await kad.stop()
})
