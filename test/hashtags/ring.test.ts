import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRandom } from '../../src/hashtags/random.js'
import { createTestnet, randomIdentity } from '../../src/hashtags/sim/testnet.js'
import { createChordNode } from '../../src/hashtags/ring.js'
import { idToHex, type Id } from '../../src/hashtags/ids.js'
import type { ChordNode } from '../../src/hashtags/ring.js'
import { addressOf, selfPeer, type Peer, type PeerInfo } from '../../src/hashtags/peer.js'
import type { Testnet } from '../../src/hashtags/sim/testnet.js'
import type { Random } from '../../src/hashtags/random.js'

async function assertAllLookupsCorrect (net: Testnet, random: Random, keysPerNode: number): Promise<void> {
  for (const node of net.live()) {
    const keys: Id[] = [node.peer.id, ...Array.from({ length: keysPerNode }, () => random.id())]
    for (const n of net.live().slice(0, 3)) keys.push(n.peer.id, n.peer.id + 1n)
    for (const key of keys) {
      const res = await node.lookup(key % (1n << 256n))
      assert.equal(idToHex(res.node.id), idToHex(net.trueSuccessor(key % (1n << 256n)).id),
        `lookup of ${idToHex(key).slice(0, 8)} from ${idToHex(node.peer.id).slice(0, 8)}`)
    }
  }
}

test('after joins, leaves and failures, every lookup from every node finds the true successor', async () => {
  for (const seed of [1, 2, 3]) {
    const random = createRandom(seed)
    const net = createTestnet({ random })
    for (let i = 0; i < 24; i++) {
      await net.add(randomIdentity(random))
      if (i % 4 === 3) await net.stabilise(1)
    }
    await net.stabilise(4)
    await assertAllLookupsCorrect(net, random, 8)
    // churn: leaves, failures and new joins mixed
    for (let i = 0; i < 6; i++) {
      const victim = random.pick(net.live().slice(1))
      if (i % 2 === 0) await net.leave(victim)
      else net.kill(victim)
      await net.add(randomIdentity(random))
    }
    await net.stabilise(5)
    await assertAllLookupsCorrect(net, random, 8)
  }
})

test('simultaneous failures up to successor-list size are survived', async () => {
  const random = createRandom(11)
  const net = createTestnet({ random, node: { successorListSize: 6 } })
  for (let i = 0; i < 30; i++) await net.add(randomIdentity(random))
  await net.stabilise(30)
  const sorted = net.live().sort((a, b) => (a.peer.id < b.peer.id ? -1 : 1))
  // kill five consecutive nodes at once
  for (const n of sorted.slice(10, 15)) net.kill(n)
  await net.stabilise(4)
  await assertAllLookupsCorrect(net, random, 5)
})

test('a node that forges its ID is refused at join', async () => {
  const random = createRandom(5)
  const net = createTestnet({ random })
  for (let i = 0; i < 5; i++) await net.add(randomIdentity(random))
  await net.stabilise(2)
  // claims another node's ID from its own address
  const honest = randomIdentity(random)
  const liar = createChordNode({ ring: 'storage', ...honest }, { transport: net.transport, verifier: net.verifier })
  const victim = net.live()[2] as ChordNode
  Object.defineProperty(liar.peer, 'info', { value: { ...liar.peer.info, id: victim.peer.info.id } })
  await assert.rejects(liar.join(net.live()[0]!.peer.info), { name: 'ForgedNodeIdError' })
  // claims an address it does not own: its ID matches the address, but the transport saw another IP
  const thief = createChordNode({ ring: 'storage', ...randomIdentity(random) }, { transport: net.transport, verifier: net.verifier })
  thief.start()
  Object.defineProperty(thief.peer, 'info', { value: { ...victim.peer.info } })
  await assert.rejects(thief.join(net.live()[0]!.peer.info), { name: 'ForgedNodeIdError' })
})

/** a hostile endpoint that answers every lookup step with `answer` */
function hostile (net: Testnet, random: Random, answer: (self: PeerInfo) => unknown): PeerInfo {
  const id = randomIdentity(random)
  const info = selfPeer(id.ip, id.domain, 0).info
  net.transport.listen(addressOf('storage', info), info.ip, async () => answer(info))
  return info
}

test('a lookup refuses forged node IDs, routing loops and malformed answers from hostile nodes', async () => {
  const random = createRandom(6)
  const net = createTestnet({ random })
  for (let i = 0; i < 6; i++) await net.add(randomIdentity(random))
  await net.stabilise(3)
  const other = net.live()[1] as ChordNode
  /** a fresh node whose only contact is `evil`: every lookup past it must go through it */
  const askVia = async (evil: PeerInfo, key: (evil: Peer) => Id): Promise<unknown> => {
    const asker = createChordNode({ ring: 'storage', ...randomIdentity(random) }, { transport: net.transport, verifier: net.verifier })
    const evilPeer = net.verifier.verify(evil)
    asker.adoptConvergedState([asker.peer, evilPeer].sort((a, b) => (a.id < b.id ? -1 : 1)))
    return await asker.lookup(key(evilPeer))
  }
  const past = (p: Peer): Id => (p.id + 10n) % (1n << 256n)
  // names a node whose ID does not match its address
  const forger = hostile(net, random, self => ({ done: false, nodes: [{ ...other.peer.info, id: idToHex(BigInt('0x' + self.id) + 5n) }] }))
  await assert.rejects(askVia(forger, past), { name: 'ForgedNodeIdError' })
  // claims to be done, with a forged successor
  const forger2 = hostile(net, random, () => ({ done: true, nodes: [{ ...other.peer.info, ip: '2001:db8:dead::1' }] }))
  await assert.rejects(askVia(forger2, past), { name: 'ForgedNodeIdError' })
  // points back behind itself: a loop
  const looper = hostile(net, random, () => ({ done: false, nodes: [other.peer.info] }))
  const looperPeer = net.verifier.verify(looper)
  const behind = other.peer.id
  const key = (p: Peer): Id => (p.id + (behind - p.id + (1n << 256n)) % (1n << 256n) / 2n) % (1n << 256n)
  assert.ok(looperPeer)
  await assert.rejects(askVia(looper, key), { name: 'LookupLoopError' })
  // garbage
  const garbler = hostile(net, random, () => ({ done: 'yes', nodes: [1] }))
  await assert.rejects(askVia(garbler, past), { name: 'MalformedMessageError' })
})

test('malformed requests are refused with named errors', async () => {
  const random = createRandom(7)
  const net = createTestnet({ random })
  const a = await net.add(randomIdentity(random))
  const b = await net.add(randomIdentity(random))
  await net.stabilise(2)
  await assert.rejects(b.call(a.peer.info, { type: 'step', key: 'nope' }), { name: 'MalformedIdError' })
  await assert.rejects(b.call(a.peer.info, { type: 'notify', node: { id: 'x' } }), { name: 'MalformedMessageError' })
  await assert.rejects(b.call(a.peer.info, { type: 'frobnicate' }), { name: 'UnknownMessageError' })
  await assert.rejects(b.call(a.peer.info, { type: 'leaving', node: a.peer.info }), { name: 'ForgedNodeIdError' })
})

test('two rings that split apart are merged by the ring-split check', async () => {
  const random = createRandom(8)
  const left = createTestnet({ random })
  for (let i = 0; i < 8; i++) await left.add(randomIdentity(random))
  await left.stabilise(3)
  // a second ring on the same transport
  const right: ChordNode[] = []
  for (let i = 0; i < 8; i++) {
    const n = createChordNode({ ring: 'storage', ...randomIdentity(random) }, { transport: left.transport, verifier: left.verifier })
    if (i === 0) n.create()
    else await n.join(right[0]!.peer.info)
    right.push(n)
    left.nodes.push(n)
  }
  for (let r = 0; r < 3; r++) for (const n of right) { await n.stabilise() }
  // every node periodically looks itself up through a node it knows from federation
  let split = false
  for (let round = 0; round < 12; round++) {
    for (const n of left.live()) {
      const other = right.includes(n) ? random.pick(left.live().filter(x => !right.includes(x))) : random.pick(right)
      split = (await n.checkRingSplit(other.peer.info)) || split
      await n.stabilise()
    }
  }
  assert.ok(split)
  await left.stabilise(3)
  await assertAllLookupsCorrect(left, random, 4)
})

test('mean lookup hops are about ½·log2(N)', async () => {
  const random = createRandom(9)
  const net = createTestnet({ random, copy: false })
  for (let i = 0; i < 256; i++) {
    await net.add(randomIdentity(random))
    if (i % 16 === 15) await net.stabilise(1)
  }
  await net.stabilise(4)
  let hops = 0
  const n = 400
  for (let i = 0; i < n; i++) hops += (await random.pick(net.live()).lookup(random.id())).hops
  const mean = hops / n
  assert.ok(Math.abs(mean - 0.5 * Math.log2(256)) < 1, `mean hops ${mean}`)
})
