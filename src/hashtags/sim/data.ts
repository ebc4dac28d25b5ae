/**
 * Loading the real data sets in shared/data (see its README) for the
 * simulator: instances with IPv4 addresses, ASNs and post counts, and
 * hashtag popularity from the Twitter 1% sample.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

export interface InstanceRow { domain: string, ip: string, asn: string, posts: number }
export interface TagRow { tag: string, count: number }

function lines (path: string): string[] {
  return readFileSync(path, 'utf8').split(/\r?\n/).filter(l => l.length > 0)
}

/**
 * file 1: successful rows with an IPv4 address and at least `minPosts`
 * announced posts. The paper takes every instance it could reach, so the
 * simulator passes 0 (its `--min-posts` default): an instance without posts
 * has no capacity and joins no vserver (figure 7, line 6).
 */
export function loadInstances (dir: string, minPosts = 1): InstanceRow[] {
  const [head, ...rows] = lines(join(dir, 'mastodon_instances_ipv4_2025-05.csv'))
  const cols = (head ?? '').split(',')
  const ix = (name: string): number => cols.indexOf(name)
  const out: InstanceRow[] = []
  for (const r of rows) {
    const f = r.split(',')
    const posts = Number(f[ix('post_count')])
    if (f[ix('status')] !== 'success' || !/^\d+\.\d+\.\d+\.\d+$/.test(f[ix('ip')] ?? '') || !(posts >= minPosts)) continue
    out.push({ domain: f[ix('domain')] as string, ip: f[ix('ip')] as string, asn: f[ix('asn')] ?? '', posts })
  }
  return out
}

/** file 4: the head (tags with more than 100 uses) of one day */
export function loadTagHead (dir: string): TagRow[] {
  return lines(join(dir, 'twitter1pct_hashtags_day1_ge100.csv')).map(l => {
    const i = l.lastIndexOf(',')
    return { tag: l.slice(0, i), count: Number(l.slice(i + 1)) }
  }).filter(r => r.count > 0).sort((a, b) => b.count - a.count)
}

/** file 5: distinct tags in the first day (Heaps' law table) */
export function loadDistinctPerDay (dir: string): number {
  const first = lines(join(dir, 'twitter1pct_heaps_days_start0.csv'))[0] ?? '0,0'
  return Number(first.split(',')[0])
}

/**
 * The tail below the head is not in the data. We continue the head's
 * rank-frequency line (least squares on log rank / log count over the
 * head) from its last rank to the number of distinct tags of one day,
 * rounding and flooring at one use. Tail tags get synthetic names.
 */
export function zipfTail (head: TagRow[], distinct: number): { tail: TagRow[], slope: number } {
  let sx = 0; let sy = 0; let sxx = 0; let sxy = 0
  const n = head.length
  head.forEach((r, i) => {
    const x = Math.log(i + 1); const y = Math.log(r.count)
    sx += x; sy += y; sxx += x * x; sxy += x * y
  })
  const slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
  const last = head[n - 1] as TagRow
  const tail: TagRow[] = []
  for (let rank = n + 1; rank <= distinct; rank++) {
    const c = Math.max(1, Math.round(last.count * ((rank / n) ** slope)))
    tail.push({ tag: `tail${rank}`, count: Math.min(c, last.count) })
  }
  return { tail, slope }
}

/**
 * IPv4 to a stand-in IPv6 /64, documented in docs/hashtags.md:
 * - behind a reverse proxy / CDN AS (Cloudflare 13335, Fastly 54113,
 *   Akamai 20940 and 16625) all instances share one /64 per AS, as the paper
 *   saw for Cloudflare's IPv6 proxies;
 * - otherwise the /24 of the IPv4 address becomes the 6to4-style prefix
 *   2002:AABB:CC00::/64 (one operator's block; same-IP hosting such as
 *   masto.host lands in one /64, as in the paper).
 */
const PROXY_ASNS = new Set(['13335', '54113', '20940', '16625'])

export function stand_in_ipv6 (row: InstanceRow): string {
  if (PROXY_ASNS.has(row.asn)) {
    const asn = Number(row.asn)
    return `2001:db8:${(asn >>> 16).toString(16)}:${(asn & 0xffff).toString(16)}::1`
  }
  const [a, b, c] = row.ip.split('.').map(Number) as [number, number, number]
  return `2002:${((a << 8) | b).toString(16)}:${(c << 8).toString(16)}:0::1`
}
