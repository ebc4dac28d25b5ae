import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createKChoices, KeySpace, type BalanceNode, type KChoicesInit, type Pos } from '../../src/hashtags/balance.js'
import { createRandom } from '../../src/hashtags/random.js'
import { BYTES_PER_POST, CAPACITY_FACTOR, metrics, yearlyBytes } from '../../src/hashtags/sim/model.js'

const at = (hi: number, lo = 0): Pos => ({ hi, lo })
const sum = (xs: ArrayLike<number>): number => Array.from(xs).reduce((a, b) => a + b, 0)

/**
 * A small ring: A (capacity 1) at 50, C (capacity 1) right behind A in the
 * same /64 cluster (same hi, larger lo), B (capacity 1000) at 100. Five keys
 * of 10 between B and A belong to A; one key of 1 belongs to B.
 */
function smallRing (init: KChoicesInit, placed = [0, 1, 2]): ReturnType<typeof createKChoices> {
  const space = new KeySpace([
    ...[10, 20, 30, 40, 45].map(hi => ({ pos: at(hi), load: 10 })),
    { pos: at(75), load: 1 }
  ])
  const nodes: BalanceNode[] = [
    { capacity: 1, candidates: [at(50, 1)] }, // A
    { capacity: 1000, candidates: [at(100)] }, // B
    { capacity: 1, candidates: [at(50, 2)] } // C
  ]
  const kc = createKChoices(space, nodes, init)
  kc.placeSingle(placed)
  return kc
}

test('the capacity model is §8.2: 4.5 × the non-redundant load, a year at 1 KiB per post', () => {
  assert.equal(CAPACITY_FACTOR, 4.5)
  assert.equal(BYTES_PER_POST, 1024)
  // one use a day in the 1% sample: ×100 for all posts, ×365 days
  assert.equal(yearlyBytes(1), 100 * 365 * 1024)
  // the paper's #NowPlaying example, 21,026 posts a month: 24.06 GiB a year
  assert.equal((yearlyBytes(21_026 * 12 / 365) / 2 ** 30).toFixed(2), '24.06')
  // with R = 4 replicas the capacity is 1.125 × the stored load
  assert.equal(CAPACITY_FACTOR / 4, 1.125)
})

test('metrics: over capacity, mismatch, overflow share and idle nodes', () => {
  const GiB = 2 ** 30
  const m = metrics([3 * GiB, 0, 1 * GiB], [1 * GiB, 2 * GiB, 1 * GiB])
  assert.equal(m.over, 1)
  assert.equal(m.mean, 0)
  assert.equal(m.median, 0)
  assert.equal(m.absMedian, 2)
  assert.equal(m.overflow, 2 / 4)
  assert.equal(m.idle, 1)
})

test('k-choices conserves the stored load through joins and rebalancing rounds', () => {
  const random = createRandom(7)
  const keys = Array.from({ length: 5000 }, () => ({ pos: at(random.int(2 ** 52)), load: 1 + random.int(100) }))
  const space = new KeySpace(keys)
  const nodes: BalanceNode[] = Array.from({ length: 60 }, (_, i) => ({
    capacity: i % 7 === 0 ? 0 : space.total * 1.125 * (i + 1) / 1830,
    candidates: Array.from({ length: 8 }, () => at(random.int(2 ** 52), random.int(2 ** 52)))
  }))
  const kc = createKChoices(space, nodes, {})
  const order = (): number[] => random.shuffle(nodes.map((_, i) => i))
  kc.joinAll(order())
  assert.ok(Math.abs(sum(kc.loads()) - space.total) < 1e-9 * space.total)
  for (let r = 0; r < 10; r++) {
    kc.rebalance(order())
    assert.ok(Math.abs(sum(kc.loads()) - space.total) < 1e-9 * space.total, `round ${r}`)
  }
  // nodes without capacity have a zero target and never hold a vserver (figure 7, line 6)
  const vs = kc.vsCounts()
  for (let i = 0; i < nodes.length; i += 7) assert.equal(vs[i], 0)
})

test('|VSset| counts active vservers: a node with one may drop it in any run', () => {
  // figure 7 reading: 1 in |VSset| = 1 runs allows a resize
  const active = smallRing({ relocateWhenOverloaded: false, dropIdle: false, headroom: false }, [0, 1])
  active.rebalance([0])
  assert.equal(active.vsCounts()[0], 0)
  assert.deepEqual(Array.from(active.loads()), [0, 51, 0])
  // the κ reading: only every 8th run, so the overloaded A is stuck in run 1
  const kappa = smallRing({ relocateWhenOverloaded: false, dropIdle: false, vsSetSize: 'kappa', headroom: false }, [0, 1])
  kappa.rebalance([0])
  assert.equal(kappa.vsCounts()[0], 1)
})

test('a vserver holding no key is dropped when the node may resize', () => {
  const kc = smallRing({ relocateWhenOverloaded: false })
  kc.rebalance([2])
  assert.equal(kc.vsCounts()[2], 0)
  const keep = smallRing({ relocateWhenOverloaded: false, dropIdle: false })
  keep.rebalance([2])
  assert.equal(keep.vsCounts()[2], 1)
})

test('an overloaded node relocates even when a small successor would veto it by cost', () => {
  // A (load 50, capacity 1) has a successor C of the same size: handing over
  // the load leaves the aggregate cost unchanged, so the cost rule keeps it
  const nodes = (): BalanceNode[] => [
    { capacity: 1, candidates: [at(50, 1)] },
    { capacity: 1000, candidates: [at(100)] },
    { capacity: 1, candidates: [at(60)] }
  ]
  const space = new KeySpace([...[10, 20, 30, 40, 45].map(hi => ({ pos: at(hi), load: 10 })), { pos: at(75), load: 1 }])
  const vetoed = createKChoices(space, nodes(), { relocateWhenOverloaded: false, dropIdle: false, headroom: false })
  vetoed.placeSingle([0, 1, 2])
  vetoed.rebalance([0])
  assert.deepEqual(Array.from(vetoed.loads()), [50, 1, 0])
  // §6.2 "nodes relocate virtual servers when reaching their overload
  // threshold": A hands over, then C does, and the load reaches B
  const forced = createKChoices(space, nodes(), { dropIdle: false, headroom: false })
  forced.placeSingle([0, 1, 2])
  forced.rebalance([0, 2])
  assert.deepEqual(Array.from(forced.loads()), [0, 51, 0])
})

test('capacity-aware: a relief move may not pass the overload to a smaller node, chain relief takes it to one with room', () => {
  // A (cap 10) holds 50 at 50; S1 and S2 (cap 1 each) sit right after it,
  // holding nothing; B (cap 1000) at 100 is the first node with room.
  const space = new KeySpace([...[10, 20, 30, 40, 45].map(hi => ({ pos: at(hi), load: 10 })), { pos: at(75), load: 1 }])
  const nodes = (): BalanceNode[] => [
    { capacity: 10, candidates: [at(50)] }, // A
    { capacity: 1, candidates: [at(51)] }, // S1
    { capacity: 1, candidates: [at(52)] }, // S2
    { capacity: 1000, candidates: [at(100)] } // B
  ]
  // the paper's rule hands A's 50 to S1, 50 times its capacity
  const paper = createKChoices(space, nodes(), { headroom: false, dropIdle: false })
  paper.placeSingle([0, 1, 2, 3])
  paper.rebalance([0])
  assert.deepEqual(Array.from(paper.loads()), [0, 50, 0, 1])
  // capacity-aware without chain relief: no admissible move, A keeps its load
  const stuck = createKChoices(space, nodes(), { chainRelief: 0, dropIdle: false, pullWhenUnderloaded: false })
  stuck.placeSingle([0, 1, 2, 3])
  assert.equal(stuck.rebalance([0]), 0)
  assert.deepEqual(Array.from(stuck.loads()), [50, 0, 0, 1])
  // chain relief: A, S1 and S2 leave together and B takes the run
  const chain = createKChoices(space, nodes(), { dropIdle: false, pullWhenUnderloaded: false })
  chain.placeSingle([0, 1, 2, 3])
  assert.equal(chain.rebalance([0]), 1)
  assert.deepEqual(Array.from(chain.loads()), [0, 0, 0, 51])
  assert.deepEqual(Array.from(chain.vsCounts()), [0, 0, 0, 1])
})

test('capacity-aware: a join never takes an interval past capacity unless it eases a worse overload', () => {
  // B (cap 1000) alone holds all 51; A (cap 10) may join at 50 (taking 50)
  // only in the paper's rules; with headroom it joins at 15 (taking 10)
  const space = new KeySpace([...[10, 20, 30, 40, 45].map(hi => ({ pos: at(hi), load: 10 })), { pos: at(75), load: 1 }])
  const nodes: BalanceNode[] = [
    { capacity: 1000, candidates: [at(100)] },
    { capacity: 10, candidates: [at(50), at(15)] }
  ]
  const paper = createKChoices(space, nodes, { kappa: 2, headroom: false })
  paper.joinAll([0, 1])
  const capped = createKChoices(space, nodes, { kappa: 2 })
  capped.joinAll([0, 1])
  for (const kc of [paper, capped]) assert.equal(sum(kc.loads()), 51)
  assert.ok((capped.loads()[1] as number) <= 10, `joiner holds ${capped.loads()[1] ?? NaN}`)
  assert.deepEqual(Array.from(capped.loads()), [41, 10])
})
