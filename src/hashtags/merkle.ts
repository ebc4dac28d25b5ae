/**
 * Merkle trees over a node's history of one key (§8.4, §9). Leaves are the
 * stored posts in a canonical order (time, then URI), so two replicas that
 * hold the same posts have the same root whatever order they received them
 * in; comparing roots across a redundancy set shows who dropped or inserted.
 */
import { createHash } from 'node:crypto'

export interface HistoryEntry { uri: string, ts: number }

const LEAF = Buffer.from([0])
const INNER = Buffer.from([1])

function sha3 (...parts: Buffer[]): Buffer {
  const h = createHash('sha3-256')
  for (const p of parts) h.update(p)
  return h.digest()
}

export function leafHash (e: HistoryEntry): Buffer {
  const ts = Buffer.alloc(8)
  ts.writeBigUInt64BE(BigInt(e.ts))
  return sha3(LEAF, ts, Buffer.from(e.uri, 'utf8'))
}

/** canonical order: oldest first, then by URI */
export function canonical (entries: readonly HistoryEntry[]): HistoryEntry[] {
  return [...entries].sort((a, b) => a.ts - b.ts || (a.uri < b.uri ? -1 : a.uri > b.uri ? 1 : 0))
}

function levels (entries: readonly HistoryEntry[]): Buffer[][] {
  let level = canonical(entries).map(leafHash)
  const out = [level]
  while (level.length > 1) {
    const next: Buffer[] = []
    for (let i = 0; i < level.length; i += 2) {
      const l = level[i] as Buffer
      const r = level[i + 1]
      next.push(r === undefined ? l : sha3(INNER, l, r))
    }
    out.push(next)
    level = next
  }
  return out
}

/** root as hex; the empty history has the hash of nothing */
export function merkleRoot (entries: readonly HistoryEntry[]): string {
  if (entries.length === 0) return sha3().toString('hex')
  const ls = levels(entries)
  return (ls[ls.length - 1]?.[0] as Buffer).toString('hex')
}

export interface ProofStep { side: 'left' | 'right', hash: string }

/** inclusion proof of `entry` (undefined if it is not in the history) */
export function merkleProof (entries: readonly HistoryEntry[], entry: HistoryEntry): ProofStep[] | undefined {
  const sorted = canonical(entries)
  let idx = sorted.findIndex(e => e.ts === entry.ts && e.uri === entry.uri)
  if (idx < 0) return undefined
  const proof: ProofStep[] = []
  const ls = levels(entries)
  for (let d = 0; d < ls.length - 1; d++) {
    const level = ls[d] as Buffer[]
    const sibling = idx % 2 === 0 ? idx + 1 : idx - 1
    const h = level[sibling]
    if (h !== undefined) proof.push({ side: idx % 2 === 0 ? 'right' : 'left', hash: h.toString('hex') })
    idx = Math.floor(idx / 2)
  }
  return proof
}

export function verifyProof (root: string, entry: HistoryEntry, proof: readonly ProofStep[]): boolean {
  let h = leafHash(entry)
  for (const step of proof) {
    const s = Buffer.from(step.hash, 'hex')
    h = step.side === 'right' ? sha3(INNER, h, s) : sha3(INNER, s, h)
  }
  return h.toString('hex') === root
}

export interface Verdict<T> {
  /** the root held by a strict majority, if any */
  root: string | undefined
  agree: T[]
  disagree: T[]
}

/** majority vote over the roots replicas reported */
export function majorityRoot<T> (reports: ReadonlyArray<{ who: T, root: string }>): Verdict<T> {
  const counts = new Map<string, number>()
  for (const r of reports) counts.set(r.root, (counts.get(r.root) ?? 0) + 1)
  let best: string | undefined
  let bestCount = 0
  for (const [root, c] of counts) if (c > bestCount) { best = root; bestCount = c }
  if (best === undefined || bestCount * 2 <= reports.length) return { root: undefined, agree: [], disagree: reports.map(r => r.who) }
  return {
    root: best,
    agree: reports.filter(r => r.root === best).map(r => r.who),
    disagree: reports.filter(r => r.root !== best).map(r => r.who)
  }
}
