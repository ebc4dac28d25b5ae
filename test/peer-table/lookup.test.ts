import { test } from 'node:test'
import assert from 'node:assert/strict'
import { compareDistance, nodeIdOf } from '../../src/peer-table/index.js'
import { VirtualClock } from '../../src/peer-table/virtual-clock.js'
import { createTestnet, type TestPeer } from './_testnet.js'

/** A small deterministic PRNG so the chosen sources and targets never change. */
function lcg (seed: number): () => number {
  let s = seed
  return () => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648 }
}

function pick<T> (xs: T[], rand: () => number): T {
  return xs[Math.floor(rand() * xs.length)] as T
}

function trueClosest (peers: TestPeer[], target: Uint8Array, k: number): string[] {
  return [...peers].sort((a, b) => compareDistance(target, a.table.self.id, b.table.self.id)).slice(0, k).map(p => p.uuid)
}

test('iterative lookups on 300 peers find every target and the true k closest', async () => {
  const tn = await createTestnet({ size: 300 })
  try {
    const rand = lcg(7)
    for (let i = 0; i < 60; i++) {
      const from = pick(tn.peers, rand)
      const target = pick(tn.peers.filter(p => p !== from), rand)
      const res = await from.kad.findNode(target.table.self.id)
      assert.equal(res.found?.uuid, target.uuid, `lookup ${i} found the target`)
      assert.equal(res.closest[0]?.uuid, target.uuid)
      const expected = trueClosest(tn.peers.filter(p => p !== from), target.table.self.id, 20)
      assert.deepEqual(res.closest.map(c => c.uuid), expected, `lookup ${i} returned the true 20 closest`)
      assert.ok(res.hops <= res.rounds)
      assert.equal(res.failed, 0)
    }
    // a random id no peer has: the true k closest, nobody "found"
    const free = nodeIdOf('no-such-peer')
    const res = await tn.peers[5]!.kad.findNode(free)
    assert.equal(res.found, undefined)
    assert.deepEqual(res.closest.map(c => c.uuid), trueClosest(tn.peers.filter(p => p !== tn.peers[5]), free, 20))
  } finally {
    await tn.stop()
  }
})

test('alpha and k are honoured: never more than alpha requests in flight, k results', async () => {
  const tn = await createTestnet({ size: 120, kad: { alpha: 2, k: 8 }, k: 8 })
  try {
    const from = tn.peers[3]!
    const res = await from.kad.findNode(tn.peers[77]!.table.self.id)
    assert.equal(res.found?.uuid, tn.peers[77]!.uuid)
    assert.equal(res.closest.length, 8)
    assert.ok(res.queried >= 8)
  } finally {
    await tn.stop()
  }
})

test('lookups route around 10% of peers failed without notice', async () => {
  const clock = new VirtualClock(1_700_000_000_000)
  const drive = async <T>(p: Promise<T>): Promise<T> => await clock.run(p)
  const tn = await createTestnet({ size: 300, timers: clock, now: () => clock.now, drive, kad: { requestTimeout: 1000 } })
  try {
    const rand = lcg(11)
    const dead = new Set<string>()
    while (dead.size < 30) dead.add(pick(tn.peers, rand).uuid)
    for (const u of dead) tn.net.fail(u)
    const live = tn.peers.filter(p => !dead.has(p.uuid))
    let found = 0
    let timeouts = 0
    for (let i = 0; i < 60; i++) {
      const from = pick(live, rand)
      const target = pick(live.filter(p => p !== from), rand)
      const t0 = clock.now
      const res = await clock.run(from.kad.findNode(target.table.self.id))
      if (res.found?.uuid === target.uuid) found++
      timeouts += res.failed
      for (const c of res.closest) assert.ok(!dead.has(c.uuid), 'a failed peer is never reported as answering')
      if (res.failed > 0) assert.ok(clock.now - t0 >= 1000, 'failures cost a request timeout')
    }
    assert.ok(found >= 59, `found ${found}/60`)
    assert.ok(timeouts > 0, 'some lookups did hit failed peers')
  } finally {
    await tn.stop()
  }
})
