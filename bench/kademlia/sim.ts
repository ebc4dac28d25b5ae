/**
 * Kademlia simulation: N peers in one process over the in-memory network,
 * on virtual time, seeded and deterministic. Joins every peer the way a new
 * box joins (it knows one introducer and looks itself up through it), then
 * measures lookups for random live peers, fails 10% of the peers at once
 * without notice, and measures again.
 *
 *   node dist/bench/kademlia/sim.js --peers 10000 --k 20 --alpha 3 --seed 1 --lookups 2000
 *
 * Writes bench/results/kademlia.json and prints a short table.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import {
  createKademlia, createLiveness, createMemoryNetwork, createPeerTable, toWire,
  type Kademlia, type KadRpcHandler, type Liveness, type MemoryNetwork, type PeerTable, type WireContact
} from '../../src/peer-table/index.js'
import { VirtualClock } from '../../src/peer-table/virtual-clock.js'

interface SimOptions {
  peers: number
  k: number
  alpha: number
  seed: number
  lookups: number
  failFraction: number
  /** virtual ms */
  requestTimeout: number
  out: string
}

interface Peer {
  uuid: string
  wire: WireContact
  table: PeerTable
  kad: Kademlia
  liveness: Liveness
}

interface PhaseFigures {
  lookups: number
  success: number
  successRate: number
  hops: { median: number, mean: number, p95: number, max: number, histogram: Record<string, number> }
  rounds: { median: number, mean: number }
  queriesPerLookup: { median: number, mean: number }
  timeoutsPerLookup: { mean: number, max: number }
  virtualMsPerLookup: { median: number, mean: number, p95: number }
}

/** sfc32: small, fast, good enough for picking peers; seeded so runs repeat. */
function prng (seed: number): () => number {
  let a = 0x9e3779b9 ^ seed
  let b = 0x243f6a88
  let c = 0xb7e15162
  let d = seed >>> 0
  const next = (): number => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0
    const t = (a + b) | 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) | 0
    c = (c << 21) | (c >>> 11)
    d = (d + 1) | 0
    const r = (t + d) | 0
    c = (c + r) | 0
    return (r >>> 0) / 4294967296
  }
  for (let i = 0; i < 16; i++) next()
  return next
}

function uuidFrom (rand: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(rand() * 16).toString(16))
  hex[12] = '4'
  hex[16] = '89ab'[Math.floor(rand() * 4)] as string
  const s = hex.join('')
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`
}

function readOptions (): SimOptions {
  const { values } = parseArgs({
    options: {
      peers: { type: 'string', default: '10000' },
      k: { type: 'string', default: '20' },
      alpha: { type: 'string', default: '3' },
      seed: { type: 'string', default: '1' },
      lookups: { type: 'string', default: '2000' },
      fail: { type: 'string', default: '0.1' },
      timeout: { type: 'string', default: '1000' },
      out: { type: 'string', default: 'bench/results/kademlia.json' }
    }
  })
  const int = (name: string, v: string | undefined, min: number): number => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got ${String(v)}`)
    return n
  }
  const fail = Number(values.fail)
  if (!(fail >= 0 && fail < 1)) throw new Error('--fail must be in [0, 1)')
  return {
    peers: int('peers', values.peers, 2),
    k: int('k', values.k, 1),
    alpha: int('alpha', values.alpha, 1),
    seed: int('seed', values.seed, 0),
    lookups: int('lookups', values.lookups, 1),
    failFraction: fail,
    requestTimeout: int('timeout', values.timeout, 1),
    out: values.out as string
  }
}

function makePeer (uuid: string, opts: SimOptions, net: MemoryNetwork, clock: VirtualClock): Peer {
  const wire: WireContact = { uuid, addresses: [`wss://${uuid.slice(0, 8)}.sim:7777`], fingerprint: uuid.replace(/-/g, '').slice(0, 40) }
  const now = (): number => clock.now
  const table = createPeerTable({ k: opts.k }, { self: { uuid }, now })
  let kad: Kademlia | undefined
  const handler: KadRpcHandler = {
    handleFindNode: (from, target) => (kad as Kademlia).handleFindNode(from, target),
    handleFindValue: (from, key) => (kad as Kademlia).handleFindValue(from, key),
    handlePing: (from) => { (kad as Kademlia).handlePing(from) }
  }
  const transport = net.join(wire, handler)
  // the simulated network admits everyone it hears of; the daemon's policy is stricter
  kad = createKademlia({ k: opts.k, alpha: opts.alpha, requestTimeout: opts.requestTimeout }, { table, transport, admit: () => true, timers: clock })
  const liveness = createLiveness({ pingTimeout: opts.requestTimeout }, {
    table,
    timers: clock,
    now,
    ping: async (c, signal) => { await transport.ping(toWire(c), { signal }) }
  })
  return { uuid, wire, table, kad, liveness }
}

async function join (opts: SimOptions, rand: () => number, net: MemoryNetwork, clock: VirtualClock): Promise<Peer[]> {
  const peers: Peer[] = []
  const started = Date.now()
  for (let i = 0; i < opts.peers; i++) {
    const peer = makePeer(uuidFrom(rand), opts, net, clock)
    await peer.kad.start()
    await peer.liveness.start()
    if (i > 0) {
      const introducer = peers[Math.floor(rand() * peers.length)] as Peer
      peer.table.add(introducer.wire)
      await clock.run(peer.kad.lookupSelf())
    }
    peers.push(peer)
    if ((i + 1) % 1000 === 0) process.stderr.write(`joined ${i + 1}/${opts.peers} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`)
  }
  return peers
}

interface Sample { ok: boolean, hops: number, rounds: number, queried: number, failed: number, ms: number }

async function measure (peers: Peer[], opts: SimOptions, rand: () => number, net: MemoryNetwork, clock: VirtualClock): Promise<PhaseFigures> {
  const live = peers.filter(p => !net.isFailed(p.uuid))
  const samples: Sample[] = []
  for (let i = 0; i < opts.lookups; i++) {
    const from = live[Math.floor(rand() * live.length)] as Peer
    let target = live[Math.floor(rand() * live.length)] as Peer
    while (target === from) target = live[Math.floor(rand() * live.length)] as Peer
    const t0 = clock.now
    const res = await clock.run(from.kad.findNode(target.table.self.id))
    samples.push({ ok: res.found?.uuid === target.uuid, hops: res.hops, rounds: res.rounds, queried: res.queried, failed: res.failed, ms: clock.now - t0 })
  }
  return summarise(samples)
}

function quantile (sorted: number[], q: number): number {
  if (sorted.length === 0) return 0
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[i] as number
}

function describe (xs: number[]): { median: number, mean: number, p95: number, max: number } {
  const s = [...xs].sort((a, b) => a - b)
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)
  return { median: quantile(s, 0.5), mean: Math.round(mean * 1000) / 1000, p95: quantile(s, 0.95), max: s[s.length - 1] ?? 0 }
}

function summarise (samples: Sample[]): PhaseFigures {
  const success = samples.filter(s => s.ok).length
  const hops = describe(samples.map(s => s.hops))
  const histogram: Record<string, number> = {}
  for (const s of samples) histogram[s.hops] = (histogram[s.hops] ?? 0) + 1
  const rounds = describe(samples.map(s => s.rounds))
  const queried = describe(samples.map(s => s.queried))
  const failed = describe(samples.map(s => s.failed))
  const ms = describe(samples.map(s => s.ms))
  return {
    lookups: samples.length,
    success,
    successRate: success / samples.length,
    hops: { ...hops, histogram },
    rounds: { median: rounds.median, mean: rounds.mean },
    queriesPerLookup: { median: queried.median, mean: queried.mean },
    timeoutsPerLookup: { mean: failed.mean, max: failed.max },
    virtualMsPerLookup: { median: ms.median, mean: ms.mean, p95: ms.p95 }
  }
}

function failPeers (peers: Peer[], fraction: number, rand: () => number, net: MemoryNetwork): number {
  const order = peers.map((p, i) => ({ p, r: rand(), i })).sort((a, b) => a.r - b.r || a.i - b.i)
  const n = Math.floor(peers.length * fraction)
  for (const { p } of order.slice(0, n)) net.fail(p.uuid)
  return n
}

function tableSizes (peers: Peer[]): { min: number, median: number, mean: number, max: number } {
  const d = describe(peers.map(p => p.table.size))
  return { min: Math.min(...peers.map(p => p.table.size)), median: d.median, mean: Math.round(d.mean * 10) / 10, max: d.max }
}

const COLUMNS = ['phase', 'hops med', 'hops mean', 'hops p95', 'rounds med', 'rounds mean', 'queries', 'timeouts', 'success']

function cells (name: string, f: PhaseFigures): string[] {
  return [
    name, String(f.hops.median), f.hops.mean.toFixed(2), String(f.hops.p95), String(f.rounds.median),
    f.rounds.mean.toFixed(2), f.queriesPerLookup.mean.toFixed(1), f.timeoutsPerLookup.mean.toFixed(2),
    `${(100 * f.successRate).toFixed(2)}%`
  ]
}

function printTable (opts: SimOptions, before: PhaseFigures, after: PhaseFigures, failed: number): void {
  const rows = [COLUMNS, cells('all peers up', before), cells(`${failed} failed, no notice`, after)]
  const width = COLUMNS.map((_, i) => Math.max(...rows.map(r => (r[i] as string).length)))
  const line = (r: string[]): string => `| ${r.map((c, i) => i === 0 ? c.padEnd(width[i] as number) : c.padStart(width[i] as number)).join(' | ')} |`
  console.log(`\nKademlia sim: ${opts.peers} peers, k=${opts.k}, alpha=${opts.alpha}, seed=${opts.seed}, ${opts.lookups} lookups per phase`)
  console.log('hops: requests in sequence until the target was named; rounds: until the lookup ended (its k closest all asked)')
  console.log(line(rows[0] as string[]))
  console.log(`|${width.map(w => '-'.repeat(w + 2)).join('|')}|`)
  for (const r of rows.slice(1)) console.log(line(r))
}

async function main (): Promise<void> {
  const opts = readOptions()
  const rand = prng(opts.seed)
  const net = createMemoryNetwork({ serialize: false })
  const clock = new VirtualClock(1_700_000_000_000)
  const t0 = Date.now()
  const peers = await join(opts, rand, net, clock)
  const joinSeconds = (Date.now() - t0) / 1000
  const tablesAfterJoin = tableSizes(peers)
  const before = await measure(peers, opts, rand, net, clock)
  const failed = failPeers(peers, opts.failFraction, rand, net)
  const after = await measure(peers, opts, rand, net, clock)
  const report = {
    params: { peers: opts.peers, k: opts.k, alpha: opts.alpha, seed: opts.seed, lookups: opts.lookups, failFraction: opts.failFraction, requestTimeoutVirtualMs: opts.requestTimeout },
    join: { wallSeconds: joinSeconds, tables: tablesAfterJoin, requests: net.stats.requests },
    before,
    after: { failedPeers: failed, ...after },
    acceptance: {
      medianHopsAtMost4: before.hops.median <= 4,
      allLookupsFindTarget: before.success === before.lookups,
      atLeast99PercentAfterFailure: after.successRate >= 0.99
    },
    wallSeconds: (Date.now() - t0) / 1000,
    node: process.version
  }
  await mkdir(dirname(resolve(opts.out)), { recursive: true })
  await writeFile(opts.out, JSON.stringify(report, null, 2) + '\n')
  printTable(opts, before, after, failed)
  console.log(`tables after join: min ${tablesAfterJoin.min}, median ${tablesAfterJoin.median}, max ${tablesAfterJoin.max} contacts; wall ${report.wallSeconds.toFixed(1)} s; wrote ${opts.out}`)
  for (const p of peers) { await p.liveness.stop(); await p.kad.stop() }
}

main().catch(err => {
  console.error(err)
  process.exitCode = 1
})
