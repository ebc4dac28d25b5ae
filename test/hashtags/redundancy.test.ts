import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRandom } from '../../src/hashtags/random.js'
import { createManualClock } from '../../src/hashtags/clock.js'
import { createCluster } from '../../src/hashtags/sim/cluster.js'
import { idToHex, tagKey } from '../../src/hashtags/ids.js'
import {
  contentPart, createKeyDirectory, createSigner, partOf, partitions, replicaLocations, signOverloadToken, verifyOverloadToken
} from '../../src/hashtags/redundancy.js'
import { mergeSubscription, type Subscription } from '../../src/hashtags/relay.js'

const T0 = Date.UTC(2025, 0, 1)

test('doubling R keeps every replica in place and adds the same number between them', () => {
  const key = tagKey('flash')
  for (const r of [1, 2, 4, 8, 16]) {
    const small = replicaLocations(key, r)
    const big = replicaLocations(key, 2 * r)
    assert.deepEqual(big.filter((_, i) => i % 2 === 0), small)
    assert.equal(new Set(big).size, 2 * r)
  }
  assert.throws(() => replicaLocations(key, 3), { name: 'InvalidRedundancyError' })
  assert.equal(partitions(4), 1)
  assert.equal(partitions(8), 2)
  // every part keeps four replicas
  for (const r of [8, 16, 32]) {
    for (let p = 0; p < partitions(r); p++) assert.equal(Array.from({ length: r }, (_, i) => i).filter(i => partOf(i, r) === p).length, 4)
  }
})

test('last request wins across the redundancy set; a tie unsubscribes', () => {
  const subs = new Map<string, Subscription>()
  assert.ok(mergeSubscription(subs, 'a', { ts: 10, on: true }))
  assert.ok(!mergeSubscription(subs, 'a', { ts: 5, on: false }))
  assert.ok(mergeSubscription(subs, 'a', { ts: 12, on: false }))
  assert.ok(!mergeSubscription(subs, 'a', { ts: 12, on: true }))
  assert.equal(subs.get('a')?.on, false)
})

test('overload tokens verify only with the relay key, the right tag and in time', () => {
  const signer = createSigner(Buffer.alloc(32, 7))
  const other = createSigner(Buffer.alloc(32, 8))
  const keys = createKeyDirectory()
  keys.add(idToHex(5n), signer.publicKey)
  const key = tagKey('busy')
  const token = signOverloadToken(signer, 5n, key, 4, T0)
  assert.equal(verifyOverloadToken(token, keys, key, T0 + 1000, 60_000).redundancy, 4)
  assert.throws(() => verifyOverloadToken(token, keys, tagKey('other'), T0, 60_000), { name: 'InvalidOverloadTokenError' })
  assert.throws(() => verifyOverloadToken(token, keys, key, T0 + 120_000, 60_000), { name: 'InvalidOverloadTokenError', message: /stale/ })
  const forged = { ...signOverloadToken(other, 5n, key, 4, T0) }
  assert.throws(() => verifyOverloadToken(forged, keys, key, T0, 60_000), { name: 'InvalidOverloadTokenError', message: /signature/ })
  assert.throws(() => verifyOverloadToken({ relay: 1 }, keys, key, T0, 60_000), { name: 'InvalidOverloadTokenError' })
})

test('an overloaded relay set doubles R onto hot spares with signed tokens, then shrinks after the cooldown', async () => {
  const random = createRandom(41)
  const clock = createManualClock(T0)
  // every relay can forward one publish per minute
  const c = createCluster({ random, clock, relay: { capacityPerWindow: 1, windowMs: 60_000, cooldownMs: 120_000 } })
  for (let i = 0; i < 16; i++) await c.add()
  await c.stabilise(4)
  const key = tagKey('flashcrowd')
  const holders = new Set(replicaLocations(key, 8).map(l => c.relayOwner(l)))
  const [pub, sub] = c.live().filter(i => !holders.has(i))
  assert.ok(pub !== undefined && sub !== undefined)
  await sub.client.subscribe('flashcrowd')
  for (const i of c.live()) await i.relay.tick() // hot spares receive the subscriber list
  const spare = c.relayOwner(replicaLocations(key, 8)[1]!)
  assert.ok(spare.relay.subscribers(key).includes(`inbox@${sub.identity.domain}`), 'hot spare holds the subscriber list')
  // a spare refuses to act without an overload token
  await assert.rejects(pub.relayNode.call(spare.relayNode.peer.info, {
    type: 'relay.publish', tagKey: idToHex(key), replica: 1, redundancy: 8, uri: 'https://p.example/x', ts: T0
  }), { name: 'InvalidOverloadTokenError' })
  let r = 4
  for (let i = 0; i < 3; i++) r = (await pub.client.publish('flashcrowd', `https://p.example/${i}`, T0)).redundancy
  assert.ok(r >= 8, `R grew to ${r}`)
  assert.equal(spare.relay.redundancy(key), 8)
  // replicas of the small set are still where they were
  for (const loc of replicaLocations(key, 4)) assert.equal(c.relayOwner(loc).relay.redundancy(key) !== undefined, true)
  await clock.advance(5000)
  assert.equal(sub.inbox.fetched.length, 3)
  // the periodic sync tells the whole doubled set that R is 8 now
  for (const i of c.live()) await i.relay.tick()
  for (const loc of replicaLocations(key, 8)) assert.equal(c.relayOwner(loc).relay.redundancy(key), 8)
  // the crowd is gone: after the cooldown the lower half shrinks the set again
  await clock.advance(200_000)
  for (let round = 0; round < 3; round++) for (const i of c.live()) await i.relay.tick()
  assert.equal(spare.relay.redundancy(key), 4)
  const lower = c.relayOwner(replicaLocations(key, 4)[0]!)
  assert.equal(lower.relay.redundancy(key), 4)
  assert.ok(lower.relay.subscribers(key).includes(`inbox@${sub.identity.domain}`))
})

test('the shrink cooldown doubles while a relay of the set is still overloaded', async () => {
  const random = createRandom(42)
  const clock = createManualClock(T0)
  const c = createCluster({ random, clock, relay: { capacityPerWindow: 1, windowMs: 10_000_000, cooldownMs: 1000 } })
  for (let i = 0; i < 12; i++) await c.add()
  await c.stabilise(4)
  const key = tagKey('stillbusy')
  const holders = new Set(replicaLocations(key, 8).map(l => c.relayOwner(l)))
  const pub = c.live().find(i => !holders.has(i))!
  for (let i = 0; i < 6; i++) await pub.client.publish('stillbusy', `https://p.example/${i}`, T0)
  const upper = c.relayOwner(replicaLocations(key, 8)[1]!)
  // with every relay limited to one publish per window the set keeps doubling
  assert.ok((upper.relay.redundancy(key) ?? 0) >= 8)
  await clock.advance(2000)
  for (const i of c.live()) await i.relay.tick()
  // every relay's one-per-window budget is spent, so none can shrink yet
  assert.ok((upper.relay.redundancy(key) ?? 0) >= 8)
})

test('storage replicas split posts into P = R/4 parts by content hash', async () => {
  const random = createRandom(43)
  const clock = createManualClock(T0)
  const c = createCluster({ random, clock })
  for (let i = 0; i < 10; i++) await c.add()
  await c.stabilise(4)
  const key = tagKey('split')
  const owner = c.storageOwner(replicaLocations(key, 8)[1]!)
  const a = c.live()[0]!
  const uris = Array.from({ length: 12 }, (_, i) => `https://s.example/${i}`)
  const mine = uris.filter(u => contentPart(u, 2) === 1)
  const theirs = uris.filter(u => contentPart(u, 2) === 0)
  assert.ok(mine.length > 0 && theirs.length > 0)
  const res = await a.storageNode.call(owner.storageNode.peer.info, { type: 'storage.store', tagKey: idToHex(key), replica: 1, redundancy: 8, post: { uri: mine[0], ts: T0 } }) as { partitions: number, part: number }
  assert.deepEqual([res.partitions, res.part], [2, 2])
  await assert.rejects(a.storageNode.call(owner.storageNode.peer.info, { type: 'storage.store', tagKey: idToHex(key), replica: 1, redundancy: 8, post: { uri: theirs[0], ts: T0 } }), { name: 'WrongPartitionError' })
})
