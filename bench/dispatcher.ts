import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connectService, type ServiceClient } from '../src/sdk/index.js'
import { PeerProcess, ROOT, createTestUser, joinPeers } from '../test/_util/peers.js'
import { sleep, waitFor } from '../test/_util/wait.js'

/**
 * Events/s and latency from a service on A to a subscriber on B: two centerd
 * processes on loopback, real PostgreSQL, 300-byte events, each persisted on
 * both sides before it is acknowledged.
 */
interface Result { name: string, value: number, unit: string, target?: string }

const PAD = 'x'.repeat(220) // with the envelope around it, about 300 bytes on the wire per event

function percentile (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN
}

async function throughput (tx: ServiceClient, got: { n: number }, to: string, n: number): Promise<number> {
  const start = got.n
  const t0 = performance.now()
  const inflight: Array<Promise<unknown>> = []
  for (let i = 0; i < n; i++) {
    inflight.push(tx.send('bench.ev', { i, t: 0, pad: PAD }, { to }))
    if (inflight.length >= 2000) await Promise.all(inflight.splice(0))
  }
  await Promise.all(inflight)
  await waitFor('all events on B', () => got.n - start >= n, 300_000, 5)
  return n / ((performance.now() - t0) / 1000)
}

async function steadyLatency (tx: ServiceClient, lat: number[], to: string, rate: number, seconds: number): Promise<void> {
  const total = rate * seconds
  const t0 = performance.now()
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate
    const wait = due - performance.now()
    if (wait > 1) await sleep(wait)
    void tx.send('bench.ev', { i, t: performance.now(), pad: PAD }, { to })
  }
  await waitFor('steady events on B', () => lat.length >= total, 120_000, 10)
}

export async function benchDispatcher (): Promise<Result[]> {
  const user = await createTestUser()
  const a = await PeerProcess.create({ name: 'bench-a' })
  const b = await PeerProcess.create({ name: 'bench-b' })
  try {
    await a.start()
    await b.start()
    await joinPeers(a, b, user.name)
    const tx = await connectService({ socket: a.servicesSocket, token: (await a.ctl('service', 'add', 'bench', '--send', 'bench.ev')).token })
    const rx = await connectService({ socket: b.servicesSocket, token: (await b.ctl('service', 'add', 'bench', '--receive', 'bench.ev')).token })
    const got = { n: 0 }
    const lat: number[] = []
    const trace: Array<[number, number]> = []
    await rx.subscribe(['bench.ev'], (ev) => {
      got.n++
      const t = (ev.data as { t: number }).t
      if (t === 0) return
      const ms = performance.now() - t
      lat.push(ms)
      trace.push([t, ms])
    })
    await throughput(tx, got, b.uuid, 2000) // warm-up
    const rates: number[] = []
    for (let r = 0; r < 3; r++) rates.push(await throughput(tx, got, b.uuid, 20_000))
    lat.length = 0
    await steadyLatency(tx, lat, b.uuid, 1000, 10)
    await tx.close()
    await rx.close()
    if (process.env.CENTER_BENCH_LAT_TRACE !== undefined) writeFileSync(process.env.CENTER_BENCH_LAT_TRACE, JSON.stringify(trace))
    return [
      { name: 'events/s pipelined, median of 3 x 20,000', value: Math.round(percentile(rates, 0.5)), unit: 'events/s', target: '>= 10000' },
      { name: 'events/s pipelined, min of 3', value: Math.round(Math.min(...rates)), unit: 'events/s' },
      { name: 'latency p50 at 1,000 events/s', value: +percentile(lat, 0.5).toFixed(2), unit: 'ms' },
      { name: 'latency p99 at 1,000 events/s', value: +percentile(lat, 0.99).toFixed(2), unit: 'ms', target: '< 50' },
      { name: 'latency max at 1,000 events/s', value: +Math.max(...lat).toFixed(2), unit: 'ms' }
    ]
  } finally {
    // a clean stop first, so that profiles (CENTER_TEST_NODE_ARGS=--cpu-prof) get written
    await a.stop().catch(() => {})
    await b.stop().catch(() => {})
    await a.destroy()
    await b.destroy()
    await user.remove()
  }
}

export function writeResults (name: string, results: Result[]): void {
  const dir = join(ROOT, 'bench/results')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `${name}.json`)
  writeFileSync(file, JSON.stringify({ name, at: new Date().toISOString(), node: process.version, results }, null, 2) + '\n')
  const w = Math.max(...results.map((r) => r.name.length))
  process.stdout.write(`\n${name} (${file})\n` + results.map((r) => `  ${r.name.padEnd(w)}  ${String(r.value).padStart(10)} ${r.unit}${r.target !== undefined ? `   (target ${r.target})` : ''}`).join('\n') + '\n')
}
