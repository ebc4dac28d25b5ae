/**
 * The storage load model of §8.2 for the simulator: per-key yearly load
 * from the Twitter sample, placed at R equidistant replicas, and node
 * capacities from the instances' post counts (total = 4.5 × the
 * non-redundant load, shared in proportion to posts).
 */
import { createHash } from 'node:crypto'
import type { Random } from '../random.js'
import { nodeIdFromParts, parseIPv6, registeredDomain, idToUnit, normaliseTag } from '../ids.js'
import { KeySpace, posOf, type Pos } from '../balance.js'
import { loadDistinctPerDay, loadTagHead, stand_in_ipv6, zipfTail, type InstanceRow } from './data.js'

export const GiB = 1024 ** 3
/** bytes stored per post URI (§8.2) */
export const BYTES_PER_POST = 1024
/** §8.2 / footnote 22: 5.5 × (§3.3) minus the instance's own copy */
export const CAPACITY_FACTOR = 4.5

export interface LoadModel { space: KeySpace, nonRedundantBytes: number, tags: number, slope: number, headTags: number, topKeyBytes: number }

/** position (top 104 bits) of sha3-256(tag) + i·2^256/R, straight from the hex digest */
export function replicaPositions (hex: string, r: number): Pos[] {
  const hi = parseInt(hex.slice(0, 13), 16)
  const lo = parseInt(hex.slice(13, 26), 16)
  const step = 2 ** 52 / r
  return Array.from({ length: r }, (_, i) => ({ hi: (hi + i * step) % 2 ** 52, lo }))
}

export function tagHex (tag: string): string {
  let t = tag
  try { t = normaliseTag(tag) } catch {}
  return createHash('sha3-256').update(t, 'utf8').digest('hex')
}

/** yearly bytes of one key from its uses in one day of the 1% sample: ×100 for all posts, ×365 days, 1 KiB per URI */
export function yearlyBytes (usesPerDayInSample: number): number {
  return usesPerDayInSample * 100 * 365 * BYTES_PER_POST
}

export function buildLoad (dir: string, r: number): LoadModel {
  const head = loadTagHead(dir)
  const { tail, slope } = zipfTail(head, loadDistinctPerDay(dir))
  const keys: Array<{ pos: Pos, load: number }> = []
  let bytes = 0
  let top = 0
  for (const t of [...head, ...tail]) {
    const b = yearlyBytes(t.count)
    bytes += b
    top = Math.max(top, b)
    for (const pos of replicaPositions(tagHex(t.tag), r)) keys.push({ pos, load: b })
  }
  return { space: new KeySpace(keys), nonRedundantBytes: bytes, tags: head.length + tail.length, slope, headTags: head.length, topKeyBytes: top }
}

export interface SimNode { row: InstanceRow, ip: string, domain: string, capacity: number, candidates: Pos[], unit0: number, units: number[] }

/**
 * n instances sampled with the seed, one per (/64, registered domain); the
 * total capacity is shared out in proportion to their post counts.
 */
export function buildNodes (rows: InstanceRow[], random: Random, n: number, kappa: number, capacityTotal: number): SimNode[] {
  const picked: Array<{ row: InstanceRow, domain: string }> = []
  // one node per (/64, registered domain): a second one would have the same ID
  const seen = new Set<string>()
  for (const row of random.shuffle([...rows])) {
    if (picked.length >= n) break
    let domain: string
    try { domain = registeredDomain(row.domain) } catch { continue }
    const id = `${stand_in_ipv6(row)}|${domain}`
    if (seen.has(id)) continue
    seen.add(id)
    picked.push({ row, domain })
  }
  const posts = picked.reduce((s, p) => s + p.row.posts, 0)
  return picked.map(({ row, domain }) => {
    const ip = stand_in_ipv6(row)
    const prefix = parseIPv6(ip).subarray(0, 8)
    const ids = Array.from({ length: kappa }, (_, vs) => nodeIdFromParts(prefix, domain, vs))
    return {
      row, ip, domain,
      capacity: capacityTotal * row.posts / posts,
      candidates: ids.map(posOf),
      unit0: idToUnit(ids[0] as bigint),
      units: ids.map(idToUnit)
    }
  })
}

/**
 * Table 1's figures: mismatch = load − capacity per node, in GiB. Not in the
 * paper: `overflow`, the share of all stored load that lies above its node's
 * capacity (what over-capacity nodes would have to drop), and `idle`, nodes
 * holding no load.
 */
export interface Metrics { over: number, mean: number, absMean: number, median: number, absMedian: number, overflow: number, idle: number }

export function median (xs: number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2
}

export function metrics (loads: ArrayLike<number>, capacities: number[]): Metrics {
  const mm = capacities.map((c, i) => ((loads[i] as number) - c) / GiB)
  return {
    over: capacities.filter((c, i) => (loads[i] as number) > c).length,
    mean: mm.reduce((s, x) => s + x, 0) / mm.length,
    absMean: mm.reduce((s, x) => s + Math.abs(x), 0) / mm.length,
    median: median(mm),
    absMedian: median(mm.map(Math.abs)),
    overflow: capacities.reduce((s, c, i) => s + Math.max(0, (loads[i] as number) - c), 0) / Math.max(1, capacities.reduce((s, _, i) => s + (loads[i] as number), 0)),
    idle: capacities.filter((_, i) => (loads[i] as number) === 0).length
  }
}
