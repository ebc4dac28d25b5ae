/**
 * Simulator for the hashtag DHT (issue 6): node placement and storage load
 * of real instances and real hashtag popularity, unbalanced and with
 * k-choices, beside the paper's Table 1; and lookup hops on a 10,000-node
 * ring. Seeded: the same arguments give the same numbers.
 *
 *   node dist/bench/hashtags/sim.js [--data DIR] [--seed N] [--nodes N]
 *     [--kappa 8] [--rounds 20] [--overload 0.95] [--underload 0.35]
 *     [--hop-nodes 10000] [--hop-lookups 2000] [--protocol-nodes 1000] [--out DIR]
 *     [--min-posts 0] [--vsset active|kappa] [--relocate-when-overloaded true]
 *     [--drop-idle true] [--headroom true] [--chain-relief 7] [--pull true]
 *     (and the non-paper variants listed in docs/hashtags.md)
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { resolve, join } from 'node:path'
import { createRandom, type Random } from '../../src/hashtags/random.js'
import { createKChoices, type BalanceNode, type KChoices, type KChoicesInit } from '../../src/hashtags/balance.js'
import { loadInstances } from '../../src/hashtags/sim/data.js'
import { buildLoad, buildNodes, median as medianOf, metrics as metricsOf, CAPACITY_FACTOR, GiB, type Metrics, type SimNode } from '../../src/hashtags/sim/model.js'
import { chart, ringPlot } from '../../src/hashtags/sim/svg.js'
import { createChordNode, type ChordNode } from '../../src/hashtags/ring.js'
import { createIdVerifier, type Peer } from '../../src/hashtags/peer.js'
import { createMemoryTransport } from '../../src/hashtags/transport.js'
import { createTestnet, randomIdentity } from '../../src/hashtags/sim/testnet.js'

const PAPER = {
  nodes: 1036,
  totalGiB: 34332.27,
  unbalanced: { over: 525, mean: 1.59, absMean: 57.60, median: 0.00, absMedian: 4.21 },
  balanced: { over: 42, mean: -9.40, absMean: 49.11, median: -0.08, absMedian: 0.12 }
}

interface Args {
  data: string, seed: number, nodes: number, kappa: number, rounds: number, overload: number, underload: number
  hopNodes: number, hopLookups: number, protocolNodes: number, out: string, redundancy: number
  movesPerRun: number, penalty: number, floor: number, resizeOver: boolean
  minPosts: number, vsSet: 'active' | 'kappa', relocateOver: boolean, dropIdle: boolean
  headroom: boolean, chainRelief: number, pull: boolean
}

function parseArgs (argv: string[]): Args {
  const a: Args = {
    data: resolve(process.cwd(), '../shared/data'), seed: 1, nodes: 1036, kappa: 8, rounds: 20, overload: 0.95, underload: 0.35,
    hopNodes: 10_000, hopLookups: 2000, protocolNodes: 1000, out: resolve(process.cwd(), 'bench/results/hashtags'), redundancy: 4,
    movesPerRun: 1, penalty: 0, floor: 0, resizeOver: false,
    minPosts: 0, vsSet: 'active', relocateOver: true, dropIdle: true,
    headroom: true, chainRelief: 7, pull: true
  }
  const bool = (k: string, v: string): boolean => {
    if (v !== 'true' && v !== 'false') throw new Error(`${k} takes true or false`)
    return v === 'true'
  }
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i]; const v = argv[i + 1]
    if (v === undefined) throw new Error(`${k ?? ''} needs a value`)
    switch (k) {
      case '--data': a.data = resolve(process.cwd(), v); break
      case '--out': a.out = resolve(process.cwd(), v); break
      case '--seed': a.seed = Number(v); break
      case '--nodes': a.nodes = Number(v); break
      case '--kappa': a.kappa = Number(v); break
      case '--rounds': a.rounds = Number(v); break
      case '--overload': a.overload = Number(v); break
      case '--underload': a.underload = Number(v); break
      case '--hop-nodes': a.hopNodes = Number(v); break
      case '--hop-lookups': a.hopLookups = Number(v); break
      case '--protocol-nodes': a.protocolNodes = Number(v); break
      case '--redundancy': a.redundancy = Number(v); break
      case '--moves-per-run': a.movesPerRun = Number(v); break
      case '--overload-penalty': a.penalty = Number(v); break
      case '--normaliser-floor': a.floor = Number(v); break
      case '--resize-when-overloaded': a.resizeOver = bool(k, v); break
      case '--min-posts': a.minPosts = Number(v); break
      case '--vsset':
        if (v !== 'active' && v !== 'kappa') throw new Error('--vsset takes active or kappa')
        a.vsSet = v
        break
      case '--relocate-when-overloaded': a.relocateOver = bool(k, v); break
      case '--drop-idle': a.dropIdle = bool(k, v); break
      case '--headroom': a.headroom = bool(k, v); break
      case '--chain-relief': a.chainRelief = Number(v); break
      case '--pull': a.pull = bool(k, v); break
      default: throw new Error(`unknown option ${k ?? ''}`)
    }
  }
  return a
}

const log = (s: string): void => { process.stderr.write(s + '\n') }

const metrics = (loads: Float64Array, nodes: SimNode[]): Metrics => metricsOf(loads, nodes.map(n => n.capacity))

const scale = (m: Metrics, f: number): Metrics => ({ ...m, mean: m.mean * f, absMean: m.absMean * f, median: m.median * f, absMedian: m.absMedian * f })

// ---------------------------------------------------------------- balancing

interface BalanceRun { kc: KChoices, best: Metrics & { round: number }, bestLoads: Float64Array, final: Metrics, finalLoads: Float64Array, perRound: Array<Metrics & { round: number, moves: number }> }

/** figure 7's join for every node in random order, then the rebalancing rounds, each in a new random order; the best round is the one with fewest nodes over capacity */
function balanceRun (name: string, kc: KChoices, nodes: SimNode[], rounds: number, random: Random): BalanceRun {
  const order = (): number[] => random.shuffle(nodes.map((_, i) => i))
  kc.joinAll(order())
  const perRound: Array<Metrics & { round: number, moves: number }> = [{ ...metrics(kc.loads(), nodes), round: 0, moves: 0 }]
  let best = { ...perRound[0] as Metrics, round: 0 }
  let bestLoads = kc.loads()
  for (let round = 1; round <= rounds; round++) {
    const moves = kc.rebalance(order())
    const m = metrics(kc.loads(), nodes)
    perRound.push({ ...m, round, moves })
    if (m.over < best.over || (m.over === best.over && m.absMedian < best.absMedian)) { best = { ...m, round }; bestLoads = kc.loads() }
    log(`${name} round ${round}: ${m.over} over capacity, abs median ${fmt(m.absMedian, 3)} GiB, overflow ${fmt(m.overflow * 100, 1)}%, ${moves} moves`)
  }
  const finalLoads = kc.loads()
  return { kc, best, bestLoads, final: metrics(finalLoads, nodes), finalLoads, perRound }
}

// ---------------------------------------------------------------- hops

async function hopsConverged (n: number, lookups: number, random: Random): Promise<{ mean: number, p99: number }> {
  const transport = createMemoryTransport({ copy: false })
  const verifier = createIdVerifier({ cacheSize: 4 * n })
  const nodes: ChordNode[] = []
  for (let i = 0; i < n; i++) nodes.push(createChordNode({ ring: 'storage', ...randomIdentity(random) }, { transport, verifier }))
  const sorted: Peer[] = nodes.map(x => x.peer).sort((a, b) => (a.id < b.id ? -1 : 1))
  for (const x of nodes) x.adoptConvergedState(sorted)
  const hops: number[] = []
  for (let i = 0; i < lookups; i++) hops.push((await random.pick(nodes).lookup(random.id())).hops)
  hops.sort((a, b) => a - b)
  return { mean: hops.reduce((s, h) => s + h, 0) / hops.length, p99: hops[Math.floor(hops.length * 0.99)] as number }
}

async function hopsProtocol (n: number, lookups: number, random: Random): Promise<{ mean: number, correct: number }> {
  const net = createTestnet({ random, copy: false })
  for (let i = 0; i < n; i++) {
    await net.add(randomIdentity(random))
    if (i % 10 === 9) await net.stabilise(1, false)
    if (i % 200 === 199) for (const x of net.live()) await x.fixAllFingers()
  }
  await net.stabilise(3)
  let total = 0
  let correct = 0
  for (let i = 0; i < lookups; i++) {
    const key = random.id()
    const res = await random.pick(net.live()).lookup(key)
    total += res.hops
    if (res.node.id === net.trueSuccessor(key).id) correct++
  }
  return { mean: total / lookups, correct: correct / lookups }
}

// ---------------------------------------------------------------- main

function fmt (x: number, d = 2): string { return x.toFixed(d) }

async function main (): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const t0 = Date.now()
  const random = createRandom(args.seed)
  mkdirSync(args.out, { recursive: true })

  log(`loading data from ${args.data}`)
  const model = buildLoad(args.data, args.redundancy)
  const rows = loadInstances(args.data, args.minPosts)
  const capacityTotal = model.nonRedundantBytes * CAPACITY_FACTOR
  const nodes = buildNodes(rows, random.fork(), args.nodes, args.kappa, capacityTotal)
  const storedTotal = model.space.total
  const toPaper = PAPER.totalGiB / (storedTotal / GiB)
  log(`${model.tags} tags (${model.headTags} real head + Zipf tail, slope ${model.slope.toFixed(3)}), stored ${fmt(storedTotal / GiB, 0)} GiB with R=${args.redundancy}; ${nodes.length} nodes, capacity ${fmt(capacityTotal / GiB, 0)} GiB`)

  const balanceNodes: BalanceNode[] = nodes.map(n => ({ capacity: n.capacity, candidates: n.candidates }))
  const common: KChoicesInit = {
    kappa: args.kappa, overload: args.overload, underload: args.underload, movesPerRun: args.movesPerRun, overloadPenalty: args.penalty,
    normaliserFloor: args.floor, resizeWhenOverloaded: args.resizeOver,
    vsSetSize: args.vsSet, relocateWhenOverloaded: args.relocateOver, dropIdle: args.dropIdle
  }
  const unbalancedLoads = (() => {
    const kc = createKChoices(model.space, balanceNodes, common)
    kc.placeSingle(nodes.map((_, i) => i))
    return kc.loads()
  })()
  const unbalanced = metrics(unbalancedLoads, nodes)
  log(`unbalanced: ${unbalanced.over} over capacity`)

  // the paper's rules (the previous version) and the capacity-aware rules, each with its own copy of the order stream
  const orders = random.fork()
  const paperRun = balanceRun('paper rules', createKChoices(model.space, balanceNodes, { ...common, headroom: false }), nodes, args.rounds, orders.fork())
  const run = args.headroom
    ? balanceRun('capacity-aware', createKChoices(model.space, balanceNodes, { ...common, headroom: true, chainRelief: args.chainRelief, pullWhenUnderloaded: args.pull }), nodes, args.rounds, orders.fork())
    : paperRun
  const { best, bestLoads, perRound, finalLoads, kc } = run
  if (process.env.SIM_DEBUG !== undefined) {
    const vs = kc.vsCounts()
    const over = nodes.map((n, i) => ({ i, cap: n.capacity / GiB, load: (finalLoads[i] as number) / GiB, vs: vs[i] as number })).filter(x => x.load > x.cap)
    for (const o of over.slice(0, 8)) log(`node ${o.i} cap ${o.cap.toFixed(1)} load ${o.load.toFixed(1)}: ${kc.explain(o.i).join('; ')}`)
  }
  const final = run.final
  const medianCapacity = medianOf(nodes.map(n => n.capacity / GiB))
  const positive = nodes.filter(n => n.capacity > 0).length
  const overPositive = (loads: Float64Array): number => nodes.filter((n, i) => n.capacity > 0 && (loads[i] as number) > n.capacity).length
  const vsCounts = kc.vsCounts()
  const noVs = vsCounts.filter(c => c === 0).length

  log(`lookup hops on a converged ${args.hopNodes}-node ring`)
  const hop = await hopsConverged(args.hopNodes, args.hopLookups, random.fork())
  log(`lookup hops on a ${args.protocolNodes}-node ring built by joins and stabilisation`)
  const proto = await hopsProtocol(args.protocolNodes, Math.min(args.hopLookups, 1000), random.fork())

  // ---- pictures
  const files: Record<string, string> = {}
  const write = (name: string, svg: string): void => { writeFileSync(join(args.out, name), svg); files[name] = join(args.out, name) }
  write('fig8-ids-1vs.svg', ringPlot(`Node IDs of ${nodes.length} real instances, 1 vserver each (cf. paper fig. 8 left)`, nodes.map(n => n.unit0)))
  write(`fig8-ids-${args.kappa}vs.svg`, ringPlot(`Node IDs, ${args.kappa} vservers per instance (cf. paper fig. 8 right)`, nodes.flatMap(n => n.units)))
  const scatter = (loads: Float64Array): Array<[number, number]> => nodes.map((n, i) => [Math.max(n.capacity / GiB, 1e-3), Math.max((loads[i] as number) / GiB, 1e-3)])
  const diag: Array<[number, number]> = [[1e-3, 1e-3], [Math.max(...nodes.map(n => n.capacity / GiB)), Math.max(...nodes.map(n => n.capacity / GiB))]]
  write('load-vs-capacity.svg', chart('Per-node storage load against capacity (GiB, log-log)', 'capacity (GiB)', 'load (GiB)', [
    { label: 'unbalanced (1 VS)', color: '#d62728', points: scatter(unbalancedLoads) },
    { label: `k-choices, paper rules (best, round ${paperRun.best.round})`, color: '#ff7f0e', points: scatter(paperRun.bestLoads) },
    { label: `k-choices, capacity-aware (best, round ${best.round})`, color: '#2ca02c', points: scatter(bestLoads) },
    { label: 'load = capacity', color: '#000000', points: diag }
  ], { logX: true, logY: true }))
  const ratio = (loads: Float64Array): Array<[number, number]> => nodes.map((n, i) => (loads[i] as number) / n.capacity).sort((a, b) => a - b).map((v, i) => [i + 1, Math.max(v, 1e-4)])
  write('load-ratio-sorted.svg', chart('Load / capacity per node, sorted (above 1 = over capacity)', 'nodes (sorted)', 'load / capacity', [
    { label: 'unbalanced', color: '#d62728', points: ratio(unbalancedLoads) },
    { label: 'k-choices, paper rules', color: '#ff7f0e', points: ratio(paperRun.bestLoads) },
    { label: 'k-choices, capacity-aware', color: '#2ca02c', points: ratio(bestLoads) },
    { label: 'capacity', color: '#000000', points: [[1, 1], [nodes.length, 1]] }
  ], { logY: true, line: true }))
  write('rounds.svg', chart('Nodes over capacity per rebalancing round', 'round', 'nodes over capacity', [
    { label: 'paper rules', color: '#ff7f0e', points: paperRun.perRound.map(r => [r.round, r.over]) },
    { label: 'capacity-aware', color: '#2ca02c', points: perRound.map(r => [r.round, r.over]) }
  ], { line: true }))

  const result = {
    args: { ...args, data: args.data, out: args.out },
    data: {
      instances: nodes.length, tags: model.tags, headTags: model.headTags, zipfSlope: model.slope,
      nonRedundantGiB: model.nonRedundantBytes / GiB, storedGiB: storedTotal / GiB, capacityGiB: capacityTotal / GiB,
      distinctSubnets: new Set(nodes.map(n => n.ip)).size
    },
    paper: PAPER,
    unbalanced,
    paperRules: { best: paperRun.best, final: paperRun.final, perRound: paperRun.perRound },
    kchoicesBest: best, kchoicesFinal: { ...final, noVs },
    scaledToPaperTotal: {
      factor: toPaper, unbalanced: scale(unbalanced, toPaper), paperRulesBest: scale(paperRun.best, toPaper),
      kchoicesBest: scale(best, toPaper), kchoicesFinal: scale(final, toPaper)
    },
    perRound,
    hops: { converged: { nodes: args.hopNodes, ...hop, halfLog2N: 0.5 * Math.log2(args.hopNodes) }, protocol: { nodes: args.protocolNodes, ...proto, halfLog2N: 0.5 * Math.log2(args.protocolNodes) } },
    pictures: files,
    seconds: (Date.now() - t0) / 1000
  }
  writeFileSync(join(args.out, 'results.json'), JSON.stringify(result, null, 2))

  const row = (name: string, p: string, a: string, b: string, c: string): string => `${name.padEnd(24)}${p.padStart(16)}  ${a.padStart(16)}  ${b.padStart(18)}  ${c.padStart(18)}`
  const sc = result.scaledToPaperTotal
  const pr = paperRun.best
  const cell = (x: number, y: number): string => `${fmt(x, 1)} [${fmt(y)}]`
  const lines = [
    '',
    `Table 1 beside the paper (${nodes.length} nodes; GiB figures as simulated, [scaled ×${fmt(toPaper, 4)} to the paper's ${PAPER.totalGiB} GiB total])`,
    row('', 'paper unbal/bal', 'ours unbalanced', `paper rules r${pr.round}`, `${args.headroom ? 'capacity-aware' : 'same'} r${best.round}`),
    row('over capacity (nodes)', `${PAPER.unbalanced.over} / ${PAPER.balanced.over}`, String(unbalanced.over), String(pr.over), String(best.over)),
    row('average mismatch', `${PAPER.unbalanced.mean} / ${PAPER.balanced.mean}`, cell(unbalanced.mean, sc.unbalanced.mean), cell(pr.mean, sc.paperRulesBest.mean), cell(best.mean, sc.kchoicesBest.mean)),
    row('abs. average mismatch', `${PAPER.unbalanced.absMean} / ${PAPER.balanced.absMean}`, cell(unbalanced.absMean, sc.unbalanced.absMean), cell(pr.absMean, sc.paperRulesBest.absMean), cell(best.absMean, sc.kchoicesBest.absMean)),
    row('median mismatch', `${PAPER.unbalanced.median} / ${PAPER.balanced.median}`, cell(unbalanced.median, sc.unbalanced.median), cell(pr.median, sc.paperRulesBest.median), cell(best.median, sc.kchoicesBest.median)),
    row('abs. median mismatch', `${PAPER.unbalanced.absMedian} / ${PAPER.balanced.absMedian}`, cell(unbalanced.absMedian, sc.unbalanced.absMedian), cell(pr.absMedian, sc.paperRulesBest.absMedian), cell(best.absMedian, sc.kchoicesBest.absMedian)),
    row('load above capacity', '-', `${fmt(unbalanced.overflow * 100, 1)}%`, `${fmt(pr.overflow * 100, 1)}%`, `${fmt(best.overflow * 100, 1)}%`),
    row('nodes holding no load', '-', String(unbalanced.idle), String(pr.idle), String(best.idle)),
    `median capacity ${fmt(medianCapacity, 2)} GiB [${fmt(medianCapacity * toPaper, 3)}] (an idle node's abs. mismatch is its capacity)`,
    `over capacity among the ${positive} nodes with capacity > 0: unbalanced ${overPositive(unbalancedLoads)}, paper rules ${overPositive(paperRun.bestLoads)}, capacity-aware ${overPositive(bestLoads)}`,
    `after all ${args.rounds} rounds: ${final.over} over capacity, abs median ${fmt(final.absMedian, 2)} GiB [${fmt(sc.kchoicesFinal.absMedian)}]; ${noVs} nodes hold no storage vserver`,
    `lookup hops: ${args.hopNodes} nodes (converged tables) mean ${fmt(hop.mean)} (p99 ${hop.p99}) vs ½·log2 N = ${fmt(0.5 * Math.log2(args.hopNodes))};` +
      ` ${args.protocolNodes} nodes built by joins: mean ${fmt(proto.mean)} vs ${fmt(0.5 * Math.log2(args.protocolNodes))}, ${fmt(proto.correct * 100, 1)}% correct`,
    `results and pictures in ${args.out} (${fmt(result.seconds, 1)} s)`
  ]
  process.stdout.write(lines.join('\n') + '\n')
}

main().catch(err => { process.stderr.write(`sim failed: ${(err as Error).stack ?? String(err)}\n`); process.exitCode = 1 })
