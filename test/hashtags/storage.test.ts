import { test } from 'node:test'
import assert from 'node:assert/strict'
import { HistoryStore, pageOf, YEAR_MS, type StoredPost } from '../../src/hashtags/storage.js'
import { createRandom } from '../../src/hashtags/random.js'
import { createManualClock } from '../../src/hashtags/clock.js'
import { createCluster } from '../../src/hashtags/sim/cluster.js'
import { merkleProof, merkleRoot, verifyProof, majorityRoot } from '../../src/hashtags/merkle.js'
import { tagKey } from '../../src/hashtags/ids.js'

const T0 = Date.UTC(2025, 0, 1)

test('a query returns posts newest first and pages with a cursor', () => {
  const store = new HistoryStore()
  const h = store.ensure(1n, 1n, 4)
  const random = createRandom(1)
  for (let i = 0; i < 37; i++) store.add(h, { uri: `https://a.example/p/${i}`, ts: T0 + random.int(10) * 1000 }, T0 + 20_000)
  const seen: StoredPost[] = []
  let cursor: string | undefined
  do {
    const page = pageOf(h.posts, 10, cursor)
    seen.push(...page.posts)
    cursor = page.cursor
  } while (cursor !== undefined)
  assert.equal(seen.length, 37)
  assert.equal(new Set(seen.map(p => p.uri)).size, 37)
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i - 1]!.ts >= seen[i]!.ts)
  assert.throws(() => pageOf(h.posts, 10, 'garbage!'), { name: 'InvalidCursorError' })
})

test('deletion keeps a rare tag while a flood on a neighbouring key fills the node', () => {
  const store = new HistoryStore({ capacityBytes: 100 * 1024 })
  const rare = store.ensure(10n, 10n, 4)
  const flood = store.ensure(11n, 11n, 4)
  for (let i = 0; i < 5; i++) store.add(rare, { uri: `https://rare.example/${i}`, ts: T0 + i }, T0 + 1e6)
  for (let i = 0; i < 5000; i++) store.add(flood, { uri: `https://flood.example/${i}`, ts: T0 + 10 + i }, T0 + 1e6)
  assert.equal(rare.posts.length, 5)
  assert.equal(store.usedBytes(), 100 * 1024)
  // the flood lost its own oldest posts
  assert.equal(flood.posts[flood.posts.length - 1]!.uri, 'https://flood.example/4905')
})

test('posts younger than a year are kept until space is needed; expired ones go first, oldest first', () => {
  const store = new HistoryStore({ capacityBytes: 10 * 1024 })
  const a = store.ensure(1n, 1n, 4)
  const b = store.ensure(2n, 2n, 4)
  const now = T0 + 2 * YEAR_MS
  store.add(a, { uri: 'https://x.example/old1', ts: T0 }, now)
  store.add(b, { uri: 'https://x.example/old2', ts: T0 + 1000 }, now)
  for (let i = 0; i < 8; i++) store.add(a, { uri: `https://x.example/new${i}`, ts: now - 1000 + i }, now)
  assert.equal(store.postCount(), 10)
  store.add(b, { uri: 'https://x.example/new-b', ts: now }, now)
  assert.ok(!a.uris.has('https://x.example/old1'))
  assert.ok(b.uris.has('https://x.example/old2'))
  store.add(a, { uri: 'https://x.example/new-a', ts: now }, now)
  assert.ok(!b.uris.has('https://x.example/old2'))
})

test('merkle roots are order independent, proofs verify, a majority finds the odd replica', () => {
  const posts = Array.from({ length: 9 }, (_, i) => ({ uri: `https://m.example/${i}`, ts: T0 + i }))
  const root = merkleRoot(posts)
  assert.equal(merkleRoot([...posts].reverse()), root)
  const proof = merkleProof(posts, posts[4]!)
  assert.ok(proof !== undefined && verifyProof(root, posts[4]!, proof))
  assert.ok(!verifyProof(root, { uri: 'https://m.example/evil', ts: T0 }, proof))
  const dropped = merkleRoot(posts.slice(1))
  const inserted = merkleRoot([...posts, { uri: 'https://m.example/x', ts: T0 }])
  const v = majorityRoot([{ who: 'a', root }, { who: 'b', root: dropped }, { who: 'c', root }, { who: 'd', root }])
  assert.equal(v.root, root)
  assert.deepEqual(v.disagree, ['b'])
  const w = majorityRoot([{ who: 'a', root }, { who: 'b', root }, { who: 'c', root }, { who: 'd', root: inserted }])
  assert.deepEqual(w.disagree, ['d'])
  // no strict majority, no verdict
  assert.equal(majorityRoot([{ who: 'a', root }, { who: 'b', root: dropped }]).root, undefined)
})

async function cluster (seed: number, size: number): Promise<ReturnType<typeof createCluster>> {
  const random = createRandom(seed)
  const clock = createManualClock(T0)
  const c = createCluster({ random, clock })
  for (let i = 0; i < size; i++) await c.add()
  await c.stabilise(4)
  return c
}

test('published posts reach storage; every replica agrees and a query pages newest first', async () => {
  const c = await cluster(21, 12)
  const [a, b] = c.live() as [NonNullable<ReturnType<typeof c.live>[0]>, NonNullable<ReturnType<typeof c.live>[0]>]
  for (let i = 0; i < 25; i++) await a.client.publish('#Rust', `https://a.example/notes/${i}`, T0 - 100_000 + i * 1000)
  const page1 = await b.client.query('rust', { limit: 10 })
  assert.equal(page1.posts.length, 10)
  assert.equal(page1.posts[0]!.uri, 'https://a.example/notes/24')
  const page2 = await b.client.query('rust', { limit: 10, cursor: page1.cursor })
  const page3 = await b.client.query('rust', { limit: 10, cursor: page2.cursor })
  assert.deepEqual([...page1.posts, ...page2.posts, ...page3.posts].map(p => p.uri),
    Array.from({ length: 25 }, (_, i) => `https://a.example/notes/${24 - i}`))
  assert.equal(page3.cursor, undefined)
  const verdict = await b.client.crossCheck('rust')
  assert.equal(verdict.agree.length, 4)
  assert.deepEqual(verdict.disagree, [])
})

test('a replica that drops or inserts posts is outvoted by the majority', async () => {
  const c = await cluster(22, 10)
  const a = c.live()[0]!
  for (let i = 0; i < 6; i++) await a.client.publish('audit', `https://a.example/n/${i}`, T0 - 1000 + i)
  const key = tagKey('audit')
  // a dishonest storage node silently removes one post from its history
  const liar = c.live().find(i => i.storage.store.locations().some(l => i.storage.store.history(l)?.tagKey === key))!
  const loc = liar.storage.store.locations().find(l => liar.storage.store.history(l)?.tagKey === key)!
  const h = liar.storage.store.history(loc)!
  h.posts.pop(); h.root = undefined
  const verdict = await a.client.crossCheck('audit')
  assert.ok(verdict.root !== undefined)
  assert.deepEqual(verdict.disagree, [liar.storageNode.peer.info.id])
})

test('with R = 4, killing any 3 of a key\'s 4 nodes loses no post and no subscription', async () => {
  const key = tagKey('resilient')
  const locations = [0, 1, 2, 3].map(i => (key + BigInt(i) * (1n << 254n)) % (1n << 256n))
  const combos = [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]
  for (const [n, kill] of combos.entries()) {
    const c = await cluster(30 + n, 14)
    const holders = new Set(locations.flatMap(l => [c.storageOwner(l), c.relayOwner(l)]))
    const [pub, sub, reader] = c.live().filter(i => !holders.has(i))
    assert.ok(pub !== undefined && sub !== undefined && reader !== undefined)
    await sub.client.subscribe('resilient')
    for (let i = 0; i < 8; i++) await pub.client.publish('resilient', `https://p.example/${i}`, T0 - 1000 + i)
    // three of the four replicas fail on each ring, at once
    for (const i of kill!) {
      c.transport.kill(c.storageOwner(locations[i]!).storageNode.address)
      c.transport.kill(c.relayOwner(locations[i]!).relayNode.address)
    }
    const dead = (a: string): boolean => !c.transport.isUp(a)
    for (let round = 0; round < 3; round++) {
      for (const inst of c.live()) {
        for (const node of [inst.storageNode, inst.relayNode]) {
          if (!dead(node.address)) { await node.checkPredecessor(); await node.stabilise() }
        }
      }
    }
    for (const inst of c.live()) {
      if (!dead(inst.storageNode.address)) { await inst.storageNode.stabilise(); await inst.storageNode.fixAllFingers() }
      if (!dead(inst.relayNode.address)) { await inst.relayNode.stabilise(); await inst.relayNode.fixAllFingers() }
    }
    // anti-entropy re-replicates from the survivor to the new owners
    for (const inst of c.live()) {
      if (!dead(inst.storageNode.address)) await inst.storage.syncReplicas()
      if (!dead(inst.relayNode.address)) await inst.relay.tick()
    }
    const page = await reader.client.query('resilient', { limit: 50 })
    assert.equal(page.posts.length, 8, `kill ${kill!.join(',')}`)
    const verdict = await reader.client.crossCheck('resilient')
    assert.equal(verdict.agree.length, 4, `all four replicas hold the same history again: ${JSON.stringify(verdict)}`)
    const subHolders = c.live().filter(i => !dead(i.relayNode.address) && i.relay.subscribers(key).includes(`inbox@${sub.identity.domain}`))
    assert.ok(subHolders.length >= 4, `subscription held by ${subHolders.length} live relays`)
    // and a new post reaches the subscriber
    await pub.client.publish('resilient', 'https://p.example/after', T0)
    await c.clock.advance(5000)
    assert.ok(sub.inbox.fetched.includes('https://p.example/after'))
  }
})

test('non-URI post references and bad timestamps are refused', async () => {
  const c = await cluster(23, 4)
  const a = c.live()[0]!
  await assert.rejects(a.client.publish('x', 'not a uri'), { name: 'InvalidPostUriError' })
  await assert.rejects(a.client.publish('x', 'javascript:alert(1)'), { name: 'InvalidPostUriError' })
  await assert.rejects(a.client.publish('x', 'https://user:pw@a.example/1'), { name: 'InvalidPostUriError' })
  await assert.rejects(a.client.publish('x', 'https://a.example/' + 'x'.repeat(1100)), { name: 'InvalidPostUriError' })
  await assert.rejects(a.client.publish('x'.repeat(300), 'https://a.example/1'), { name: 'TagTooLongError' })
  const key = tagKey('x')
  const owner = c.storageOwner(key)
  await assert.rejects(a.storageNode.call(owner.storageNode.peer.info, {
    type: 'storage.store', tagKey: key.toString(16).padStart(64, '0'), replica: 0, redundancy: 4, post: { uri: 'https://a.example/1', ts: T0 + 10 * 60_000 }
  }), { name: 'InvalidPostUriError' })
  await assert.rejects(a.storageNode.call(owner.storageNode.peer.info, {
    type: 'storage.store', tagKey: key.toString(16).padStart(64, '0'), replica: 0, redundancy: 3, post: { uri: 'https://a.example/1', ts: T0 }
  }), { name: 'InvalidRedundancyError' })
})
