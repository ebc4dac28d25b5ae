/**
 * k-choices load balancing with virtual servers (§6.2, figure 7), over a
 * static map of per-key load. Each node may activate any subset of its κ
 * candidate positions (vserver 0..κ-1). Costs are mismatches between load
 * and target, normalised by the target, summed over the nodes a move affects
 * (the mover, the successor that gives up load and the one that takes it).
 *
 * Readings of §6.2 that the paper leaves open (see docs/hashtags.md):
 * - |VSset| is the node's set of *active* vservers, as in figure 7 (line 12
 *   removes the IDs in VSset from the candidates, line 19 adds the new one),
 *   so a node may create or destroy vservers once it has relocated more than
 *   |VSset| times, or in one run of every |VSset| (§8.3);
 * - "nodes relocate virtual servers when reaching their overload threshold":
 *   a node above Ui makes its best load-reducing move even when that does not
 *   lower the aggregate cost (the dampened, cost-improving rule alone lets a
 *   small successor veto every move);
 * - a vserver that holds no key is dropped when the node may resize: the cost
 *   cannot see it, but it only costs routing upkeep.
 * A node with a zero target (no capacity) joins no vserver (figure 7, line 6).
 *
 * Capacity-aware admission (`headroom`, our addition, on by default): the
 * paper's cost is symmetric around a target of 65% of capacity while the
 * system must carry 89% on average, so it cannot tell 20% from 110% of
 * capacity, and overloaded nodes pass their intervals on as a hot potato.
 * With `headroom`, a join or move may leave a node it touches above its
 * capacity only if it lowers the highest load/capacity ratio among the nodes
 * it touches; an underloaded node pulls load; and an overloaded node that has
 * no admissible move of its own leaves together with the next few vservers
 * (chain relief), so that the first node after them with room takes the run.
 *
 * Positions are compared by their top 104 bits (two 52-bit numbers): enough
 * to order nodes that share a /64 (their IDs differ only from bit 64 on) and
 * to place keys, at a fraction of the cost of 256-bit bigints.
 */
import type { Random } from './random.js'

/** a ring position as two 52-bit halves of its top 104 bits */
export interface Pos { hi: number, lo: number }

const TWO52 = 2 ** 52
export function posOf (id: bigint): Pos {
  return { hi: Number(id >> 204n), lo: Number((id >> 152n) & BigInt(TWO52 - 1)) }
}

function cmpPos (a: Pos, b: Pos): number {
  return a.hi - b.hi || a.lo - b.lo
}

/** keys sorted by position with prefix sums of their load */
export class KeySpace {
  readonly hi: Float64Array
  readonly prefix: Float64Array
  readonly total: number

  constructor (keys: Array<{ pos: Pos, load: number }>) {
    const sorted = [...keys].sort((a, b) => cmpPos(a.pos, b.pos))
    this.hi = Float64Array.from(sorted, k => k.pos.hi)
    this.prefix = new Float64Array(sorted.length + 1)
    for (let i = 0; i < sorted.length; i++) this.prefix[i + 1] = (this.prefix[i] as number) + (sorted[i] as { load: number }).load
    this.total = this.prefix[sorted.length] as number
  }

  /** number of keys at or before p */
  rank (p: Pos): number {
    let lo = 0
    let hi = this.hi.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((this.hi[mid] as number) <= p.hi) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** load of keys in (a, b], wrapping; empty when a == b (a lone vserver is handled by the caller) */
  between (a: Pos, b: Pos): number {
    const ra = this.rank(a)
    const rb = this.rank(b)
    const c = cmpPos(a, b)
    if (c === 0) return 0
    if (c < 0) return (this.prefix[rb] as number) - (this.prefix[ra] as number)
    return this.total - (this.prefix[ra] as number) + (this.prefix[rb] as number)
  }
}

export interface BalanceNode {
  capacity: number
  /** candidate positions, index = vserver number (κ of them) */
  candidates: Pos[]
}

export interface KChoicesInit {
  /** @default 8 */
  kappa?: number
  /** overload threshold as a share of capacity @default 0.95 */
  overload?: number
  /** underload threshold @default 0.35 */
  underload?: number
  /** minimum cost improvement for a move (dampening ε, in target units) @default 0 */
  epsilon?: number
  /** moves a node may make in one rebalancing run; the paper makes one @default 1 */
  movesPerRun?: number
  /**
   * extra cost per target unit of load above capacity; 0 is the paper's
   * symmetric mismatch @default 0
   */
  overloadPenalty?: number
  /**
   * normalise mismatches by max(target, this share of the mean target), so a
   * node with a tiny target cannot veto every move next to it; 0 = the paper
   * @default 0
   */
  normaliserFloor?: number
  /** a node over capacity may create or drop vservers in any run @default false */
  resizeWhenOverloaded?: boolean
  /**
   * what |VSset| counts in "create or destroy after |VSset| relocations / in 1
   * of |VSset| runs": the node's active vservers (figure 7) or all κ
   * candidates @default 'active'
   */
  vsSetSize?: 'active' | 'kappa'
  /** a node above its overload threshold makes its best load-reducing move even if the aggregate cost rises @default true */
  relocateWhenOverloaded?: boolean
  /** drop a vserver that holds no key when the node may resize @default true */
  dropIdle?: boolean
  /**
   * capacity-aware admission (our addition, see docs/hashtags.md): a join or
   * move may leave a node it touches above `admitAt` × capacity only if it
   * lowers the highest load/capacity ratio among the nodes it touches @default true
   */
  headroom?: boolean
  /** with headroom: the share of capacity no move may push a node past (unless it eases a worse overload) @default 1 */
  admitAt?: number
  /**
   * with headroom: an overloaded node with no admissible move of its own may
   * have up to this many of the vservers after it leave with it (0 = off) @default 7
   */
  chainRelief?: number
  /** with headroom: a node below Li pulls load @default true */
  pullWhenUnderloaded?: boolean
}

interface Vs { node: number, slot: number, pos: Pos }

export interface BalanceState {
  /** load per node */
  loads: () => Float64Array
  /** active vservers per node */
  vsCounts: () => Uint8Array
  /** active positions with their node, for plots */
  active: () => Array<{ node: number, slot: number, pos: Pos }>
}

export interface KChoices extends BalanceState {
  /** place nodes one by one: vserver 0 only (the unbalanced baseline) */
  placeSingle: (order: number[]) => void
  /** node_join of figure 7 for each node in order */
  joinAll: (order: number[]) => void
  /** debugging: why a node keeps its vservers */
  explain: (node: number) => string[]
  /** one rebalancing round over all nodes in the given order; returns moves made */
  rebalance: (order: number[]) => number
}

export function createKChoices (space: KeySpace, nodes: BalanceNode[], init: KChoicesInit = {}, random?: Random): KChoices {
  const kappa = init.kappa ?? 8
  const U = init.overload ?? 0.95
  const L = init.underload ?? 0.35
  const eps = init.epsilon ?? 0
  const movesPerRun = init.movesPerRun ?? 1
  const penalty = init.overloadPenalty ?? 0
  const resizeWhenOverloaded = init.resizeWhenOverloaded ?? false
  const vsSetSize = init.vsSetSize ?? 'active'
  const forceOverloaded = init.relocateWhenOverloaded ?? true
  const dropIdle = init.dropIdle ?? true
  const headroom = init.headroom ?? true
  const pull = init.pullWhenUnderloaded ?? true
  const admitAt = init.admitAt ?? 1
  const chain = init.chainRelief ?? 7
  /** figure 7: target = (Ui + Li) / 2; zero for a node without capacity */
  const target = nodes.map(n => Math.max(0, n.capacity * (U + L) / 2))
  /** normaliser: a zero target still divides to a huge cost */
  const norm0 = target.map(t => Math.max(t, 1e-9))
  const load = new Float64Array(nodes.length)
  const relocations = new Uint32Array(nodes.length)
  const runs = new Uint32Array(nodes.length)
  const used = nodes.map(() => new Set<number>())
  let ring: Vs[] = []
  void random

  // ---- ring bookkeeping (sorted array of active vservers)
  const findIdx = (p: Pos): number => {
    let lo = 0
    let hi = ring.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (cmpPos((ring[mid] as Vs).pos, p) < 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }
  const at = (i: number): Vs => ring[((i % ring.length) + ring.length) % ring.length] as Vs
  const vsLoad = (i: number): number => (ring.length === 1 ? space.total : space.between(at(i - 1).pos, at(i).pos))

  const recompute = (): void => {
    load.fill(0)
    for (let i = 0; i < ring.length; i++) load[at(i).node] = (load[at(i).node] as number) + vsLoad(i)
  }

  const capacity = nodes.map(n => n.capacity)
  /** mismatch to target in target units; optionally extra weight on load above capacity */
  const meanTarget = target.reduce((a, b) => a + b, 0) / Math.max(1, target.length)
  const floor = meanTarget * (init.normaliserFloor ?? 0)
  const cost = (n: number, w: number): number => {
    const t = target[n] as number
    const norm = Math.max(norm0[n] as number, floor)
    const c = capacity[n] as number
    return Math.abs(w - t) / norm + (w > c ? penalty * (w - c) / norm : 0)
  }

  /** load deltas if `skip` (an index in ring, or -1) leaves and a vserver appears at `p` (or none) */
  const deltas = (skip: number, p: Pos | null): Map<number, number> => {
    const d = new Map<number, number>()
    const add = (n: number, x: number): void => { d.set(n, (d.get(n) ?? 0) + x) }
    const n = ring.length - (skip >= 0 ? 1 : 0)
    if (skip >= 0) {
      const lv = vsLoad(skip)
      add(at(skip).node, -lv)
      if (n > 0) add(at(skip + 1).node, lv)
    }
    if (p === null) return d
    if (n === 0) return d
    let s = findIdx(p)
    if (skip >= 0 && ((s % ring.length) === skip)) s++
    let pr = s - 1
    if (skip >= 0 && ((pr % ring.length + ring.length) % ring.length) === skip) pr--
    const wa = n === 0 ? space.total : space.between(at(pr).pos, p)
    add(at(s).node, -wa)
    return d
  }

  const gain = (mover: number, d: Map<number, number>, moverGain: number): number => {
    let before = 0
    let after = 0
    d.set(mover, (d.get(mover) ?? 0) + moverGain)
    for (const [n, x] of d) {
      before += cost(n, load[n] as number)
      after += cost(n, (load[n] as number) + x)
    }
    return before - after
  }

  const activate = (node: number, slot: number): void => {
    const pos = (nodes[node] as BalanceNode).candidates[slot] as Pos
    ring.splice(findIdx(pos), 0, { node, slot, pos })
    used[node]?.add(slot)
  }
  const deactivate = (idx: number): void => {
    const v = at(idx)
    ring.splice(((idx % ring.length) + ring.length) % ring.length, 1)
    used[v.node]?.delete(v.slot)
  }

  /** load a new vserver at p would take, in the current ring */
  const takes = (p: Pos, skip = -1): number => {
    const n = ring.length - (skip >= 0 ? 1 : 0)
    if (n === 0) return space.total
    let s = findIdx(p)
    if (skip >= 0 && (s % ring.length) === skip) s++
    let pr = s - 1
    if (skip >= 0 && ((pr % ring.length + ring.length) % ring.length) === skip) pr--
    return space.between(at(pr).pos, p)
  }

  /** figure 7 vs_join: the free slot with the least cost for remaining target ta */
  const vsJoin = (node: number, ta: number): number => {
    let best = -1
    let bestCost = Infinity
    let bestWa = 0
    const cands = (nodes[node] as BalanceNode).candidates
    for (let slot = 0; slot < Math.min(kappa, cands.length); slot++) {
      if (used[node]?.has(slot) === true) continue
      const p = cands[slot] as Pos
      const wa = takes(p)
      // capacity-aware: no join that overloads someone without easing a worse overload
      if (headroom && ring.length > 0 && !admissible(node, new Map([[at(findIdx(p)).node, -wa]]), wa)) continue
      let c = Math.abs(ta - wa) / (norm0[node] as number)
      if (ring.length > 0) {
        const s = at(findIdx(p)).node
        const ws = load[s] as number
        c += cost(s, ws - wa) - cost(s, ws)
      }
      if (c < bestCost) { bestCost = c; best = slot; bestWa = wa }
    }
    if (best < 0) return 0
    if (ring.length > 0) { const s = at(findIdx(cands[best] as Pos)).node; load[s] = (load[s] as number) - bestWa }
    activate(node, best)
    load[node] = (load[node] as number) + (ring.length === 1 ? space.total : bestWa)
    return bestWa
  }

  const nodeJoin = (node: number): void => {
    let ta = target[node] as number
    let i = kappa / 2
    while (ta > 0 && i > 0) {
      ta -= vsJoin(node, ta)
      i--
    }
  }

  /**
   * capacity-aware admission of a move (see KChoicesInit.headroom): it may
   * leave a node it touches above its overload threshold only if it lowers
   * the highest load/capacity ratio among the nodes it touches. `d` holds the
   * load changes of the others and the mover's loss; `taken` the mover's gain.
   */
  const admissible = (mover: number, d: Map<number, number>, taken: number): boolean => {
    let worstBefore = 0
    let worstAfter = 0
    let over = false
    const look = (n: number, x: number): void => {
      const c = capacity[n] as number
      const w0 = load[n] as number
      const w1 = w0 + x
      worstBefore = Math.max(worstBefore, c > 0 ? w0 / c : (w0 > 0 ? Infinity : 0))
      worstAfter = Math.max(worstAfter, c > 0 ? w1 / c : (w1 > 0 ? Infinity : 0))
      if (w1 > admitAt * c) over = true
    }
    look(mover, (d.get(mover) ?? 0) + taken)
    for (const [n, x] of d) if (n !== mover) look(n, x)
    return !over || worstAfter < worstBefore
  }

  /**
   * An overloaded node none of whose own moves is admissible: its vserver
   * and the next j active vservers (j < chain, within the successor list)
   * leave together, so that the first vserver after them, which has room,
   * takes their intervals. Shortest admissible run first; the nodes that
   * leave are underloaded afterwards and pull load elsewhere.
   */
  const chainRelief = (node: number): boolean => {
    for (let j = 1; j <= chain && j + 2 <= ring.length; j++) {
      for (let i = 0; i < ring.length; i++) {
        if (at(i).node !== node) continue
        const d = new Map<number, number>()
        const add = (n: number, x: number): void => { d.set(n, (d.get(n) ?? 0) + x) }
        let moved = 0
        for (let k = 0; k <= j; k++) { const w = vsLoad(i + k); add(at(i + k).node, -w); moved += w }
        add(at(i + j + 1).node, moved)
        if (!admissible(node, d, 0)) continue
        const leaving = new Set(Array.from({ length: j + 1 }, (_, k) => at(i + k)))
        ring = ring.filter(v => !leaving.has(v))
        for (const v of leaving) used[v.node]?.delete(v.slot)
        for (const [n, x] of d) load[n] = (load[n] as number) + x
        relocations[node] = 0
        return true
      }
    }
    return false
  }

  /** best single move for a node: relocate one vserver, or (after |VSset| relocations) add or drop one */
  const rebalanceNode = (node: number, newRun: boolean): boolean => {
    const mine: number[] = []
    for (let i = 0; i < ring.length; i++) if (at(i).node === node) mine.push(i)
    const free: number[] = []
    const cands = (nodes[node] as BalanceNode).candidates
    for (let s = 0; s < Math.min(kappa, cands.length); s++) if (used[node]?.has(s) !== true) free.push(s)
    // §6.2: after more than |VSset| relocations a node may create or destroy
    // vservers; §8.3 reads this as "one run in |VSset|", so either opens the door
    if (newRun) runs[node] = (runs[node] as number) + 1
    const setSize = vsSetSize === 'kappa' ? kappa : Math.max(1, mine.length)
    const mayResize = (relocations[node] as number) > setSize || (runs[node] as number) % setSize === 0 ||
      (resizeWhenOverloaded && (load[node] as number) > (capacity[node] as number))
    if (dropIdle && mayResize && mine.length > 0) {
      const idle = mine.find(i => vsLoad(i) === 0)
      if (idle !== undefined) {
        deactivate(idle)
        relocations[node] = 0
        return true
      }
    }
    // §6.2: a node past its overload threshold relocates; the move need not
    // lower the aggregate cost, but it must lower the node's own load
    const forced = forceOverloaded && (load[node] as number) > U * (capacity[node] as number)
    const pulling = headroom && pull && !forced && (load[node] as number) < L * (capacity[node] as number)
    let best: { gain: number, drop: number, add: number, d: Map<number, number> } = { gain: forced || pulling ? -Infinity : eps, drop: -1, add: -1, d: new Map() }
    const consider = (drop: number, add: number): void => {
      const p = add >= 0 ? cands[add] as Pos : null
      const d = deltas(drop, p)
      const taken = p === null ? 0 : takes(p, drop)
      const own = (d.get(node) ?? 0) + taken
      if (forced && own >= 0) return
      if (pulling && own <= 0) return
      if (headroom && !admissible(node, d, taken)) return
      const g = gain(node, d, taken)
      if (g > best.gain) best = { gain: g, drop, add, d }
    }
    for (const i of mine) {
      for (const s of free) consider(i, s)
      if (mayResize) consider(i, -1)
    }
    if (mayResize && mine.length < kappa && (target[node] as number) > 0) for (const s of free) consider(-1, s)
    if (best.drop < 0 && best.add < 0) return forced && headroom && chain > 0 ? chainRelief(node) : false
    if (best.drop >= 0) deactivate(best.drop)
    if (best.add >= 0) activate(node, best.add)
    for (const [n, x] of best.d) load[n] = (load[n] as number) + x
    // a resize spends the relocation budget; a relocation adds to it
    relocations[node] = best.drop >= 0 && best.add >= 0 ? (relocations[node] as number) + 1 : 0
    return true
  }

  return {
    placeSingle (order) {
      ring = []
      for (const u of used) u.clear()
      for (const n of order) activate(n, 0)
      recompute()
    },
    joinAll (order) {
      ring = []
      for (const u of used) u.clear()
      for (const n of order) nodeJoin(n)
      recompute()
    },
    rebalance (order) {
      let moves = 0
      for (const n of order) {
        for (let k = 0; k < movesPerRun && rebalanceNode(n, k === 0); k++) moves++
      }
      // incremental updates drift by rounding only; re-derive once per round
      recompute()
      return moves
    },
    loads: () => Float64Array.from(load),
    explain: (node: number) => {
      const out: string[] = []
      for (let i = 0; i < ring.length; i++) {
        if (at(i).node !== node) continue
        const d = deltas(i, null)
        const s = at(i + 1).node
        out.push(`vs load ${vsLoad(i).toExponential(2)} succ node ${s} load/target ${((load[s] as number) / (target[s] as number)).toFixed(2)} dropGain ${gain(node, d, 0).toFixed(3)} self load/target ${((load[node] as number) / (target[node] as number)).toFixed(2)}`)
      }
      return out
    },
    vsCounts: () => Uint8Array.from(used, u => u.size),
    active: () => ring.map(v => ({ ...v }))
  }
}
