/**
 * Issue 6's simulation acceptance on the real data in ../shared/data (seed 1,
 * the same sample and order streams as `npm run sim:hashtags`): k-choices
 * over 1,036 real instances, and lookup hops on a 10,000-node ring. The
 * heavy runs over five seeds are in bench/hashtags/sim.ts.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { createRandom, type Random } from '../../src/hashtags/random.js'
import { createKChoices, type BalanceNode, type KChoices } from '../../src/hashtags/balance.js'
import { loadInstances } from '../../src/hashtags/sim/data.js'
import { buildLoad, buildNodes, CAPACITY_FACTOR, GiB, median, metrics, type Metrics } from '../../src/hashtags/sim/model.js'
import { createChordNode, type ChordNode } from '../../src/hashtags/ring.js'
import { createIdVerifier, type Peer } from '../../src/hashtags/peer.js'
import { createMemoryTransport } from '../../src/hashtags/transport.js'
import { randomIdentity } from '../../src/hashtags/sim/testnet.js'

const DATA = resolve(process.env.CENTER_HASHTAGS_DATA ?? resolve(process.cwd(), '../shared/data'))
const haveData = existsSync(resolve(DATA, 'mastodon_instances_ipv4_2025-05.csv'))
const skip = haveData ? false : `the real data set is not at ${DATA} (set CENTER_HASHTAGS_DATA)`
/** the paper's Table 1, balanced column, and its total stored size */
const PAPER = { over: 42, absMedian: 0.12, absMean: 49.11, totalGiB: 34332.27 }

/** join in random order, then 20 rounds; the best round has the fewest nodes over capacity */
function balance (kc: KChoices, n: number, capacities: number[], random: Random): Metrics & { conserved: boolean } {
  const order = (): number[] => random.shuffle(Array.from({ length: n }, (_, i) => i))
  kc.joinAll(order())
  let best = metrics(kc.loads(), capacities)
  let conserved = true
  const total = kc.loads().reduce((a, b) => a + b, 0)
  for (let round = 1; round <= 20; round++) {
    kc.rebalance(order())
    const loads = kc.loads()
    if (Math.abs(loads.reduce((a, b) => a + b, 0) - total) > 1e-9 * total) conserved = false
    const m = metrics(loads, capacities)
    if (m.over < best.over || (m.over === best.over && m.absMedian < best.absMedian)) best = m
  }
  return { ...best, conserved }
}

test('simulation on 1,036 real instances: capacity-aware k-choices has at most 1% over capacity', { skip }, () => {
  const random = createRandom(1)
  const model = buildLoad(DATA, 4)
  const nodes = buildNodes(loadInstances(DATA, 0), random.fork(), 1036, 8, model.nonRedundantBytes * CAPACITY_FACTOR)
  assert.equal(nodes.length, 1036)
  const capacities = nodes.map(n => n.capacity)
  const bn: BalanceNode[] = nodes.map(n => ({ capacity: n.capacity, candidates: n.candidates }))
  const toPaper = PAPER.totalGiB / (model.space.total / GiB)

  const single = createKChoices(model.space, bn)
  single.placeSingle(nodes.map((_, i) => i))
  const unbalanced = metrics(single.loads(), capacities)
  // the paper had 525 of 1,036 unbalanced; ours is of the same order
  assert.ok(unbalanced.over > 400, `unbalanced: ${unbalanced.over} over capacity`)

  const orders = random.fork()
  const paper = balance(createKChoices(model.space, bn, { headroom: false }), nodes.length, capacities, orders.fork())
  const aware = balance(createKChoices(model.space, bn), nodes.length, capacities, orders.fork())
  assert.ok(paper.conserved && aware.conserved, 'the stored load is conserved')

  // acceptance: at most 1% of the nodes over capacity (the paper's rules leave about as many as the paper's 42)
  assert.ok(aware.over <= 0.01 * nodes.length, `capacity-aware: ${aware.over} over capacity`)
  assert.ok(paper.over > 0.01 * nodes.length, `paper rules: ${paper.over} over capacity`)
  // not by piling the overflow up: less load above capacity, and a better fit on average, than the paper's rules
  assert.ok(aware.overflow < 0.5 * paper.overflow, `load above capacity ${aware.overflow} against ${paper.overflow}`)
  assert.ok(aware.absMean * toPaper < PAPER.absMean && aware.absMean < paper.absMean, `abs. mean mismatch ${aware.absMean * toPaper} GiB scaled`)
  // the abs. median mismatch is pinned by the idle small nodes to about the
  // median capacity; it is the paper's 0.12 GiB, not better (docs/hashtags.md)
  const medianCapacity = median(capacities) / GiB
  assert.ok(aware.absMedian <= medianCapacity * 1.01, `abs. median ${aware.absMedian} GiB, median capacity ${medianCapacity} GiB`)
  assert.ok(aware.absMedian * toPaper < PAPER.absMedian + 0.01, `abs. median ${aware.absMedian * toPaper} GiB scaled`)
})

test('lookups on a 10,000-node ring take ½·log2 N hops, within one', async () => {
  const random = createRandom(3)
  const n = 10_000
  const transport = createMemoryTransport({ copy: false })
  const verifier = createIdVerifier({ cacheSize: 4 * n })
  const nodes: ChordNode[] = []
  for (let i = 0; i < n; i++) nodes.push(createChordNode({ ring: 'storage', ...randomIdentity(random) }, { transport, verifier }))
  const sorted: Peer[] = nodes.map(x => x.peer).sort((a, b) => (a.id < b.id ? -1 : 1))
  for (const x of nodes) x.adoptConvergedState(sorted)
  let hops = 0
  const lookups = 500
  for (let i = 0; i < lookups; i++) {
    const key = random.id()
    const res = await random.pick(nodes).lookup(key)
    // the true successor: the first node at or after the key
    const owner = sorted.find(p => p.id >= key) ?? sorted[0]
    assert.equal(res.node.id, owner?.id)
    hops += res.hops
  }
  const mean = hops / lookups
  assert.ok(Math.abs(mean - 0.5 * Math.log2(n)) <= 1, `mean hops ${mean} against ${0.5 * Math.log2(n)}`)
})
