import { cachedNodeId, compareDistance, idEquals } from './id.js'
import { raceSignal, scopedSignal, type ScopedSignal, type Timers } from './timers.js'
import type { WireContact } from './transport.js'

/** A contact in a lookup's shortlist. */
interface Entry {
  contact: WireContact
  id: Uint8Array
  /** referral depth: 0 = from our own table, n = learned from a depth n-1 peer's answer */
  depth: number
  state: 'new' | 'pending' | 'ok' | 'failed'
}

/** What one query of one peer produced. */
export interface QueryAnswer {
  contacts: WireContact[]
  /** the peer answered with what the lookup was for (findValue): stop now */
  stop?: boolean
}

export interface IterativeLookupOptions {
  target: Uint8Array
  selfUuid: string
  /** starting contacts, usually the local table's k closest */
  seeds: WireContact[]
  k: number
  alpha: number
  requestTimeout: number
  timers: Timers
  signal?: AbortSignal
  query: (to: WireContact, signal: AbortSignal) => Promise<QueryAnswer>
  /** a peer answered (it is alive) */
  onAnswer?: (from: WireContact, answer: QueryAnswer) => void
  /** a peer failed or timed out */
  onFailure?: (to: WireContact, err: unknown) => void
}

export interface LookupStats {
  /**
   * Referral depth at which the exact target id was first learned: 0 when it
   * was in our own table, 1 when the first peer asked named it, and so on.
   * For a findValue hit, the requests it took to reach the peer that had the
   * value. When the target was never seen, the deepest depth queried.
   */
  hops: number
  /** longest chain of sequential requests the lookup made before it ended */
  rounds: number
  queried: number
  failed: number
}

export interface LookupOutcome extends LookupStats {
  /** up to k peers that answered, closest to the target first */
  closest: WireContact[]
  /** the peer whose id is the target, if it answered */
  found?: WireContact
  /** set when a query answered with `stop` (findValue hit) */
  stoppedBy?: WireContact
}

/**
 * Kademlia's iterative node lookup. Keeps at most `alpha` requests in flight
 * to the closest not-yet-asked peers among the k closest that have not
 * failed, and ends when those k have all answered or failed and nothing is
 * in flight: no closer peer can still appear. Failed peers drop out of the
 * window, so the lookup routes around dead ones without waiting on rounds.
 */
export function iterativeLookup (opts: IterativeLookupOptions): Promise<LookupOutcome> {
  return new Promise<LookupOutcome>((resolve, reject) => {
    new LookupRun(opts, resolve, reject).begin()
  })
}

class LookupRun {
  private readonly entries: Entry[] = []
  private readonly seen = new Set<string>()
  private readonly active = new Set<ScopedSignal>()
  private readonly ctl = new AbortController()
  private inflight = 0
  private settled = false
  private targetDepth = -1
  private stoppedBy: WireContact | undefined
  private readonly stats = { hops: 0, rounds: 0, queried: 0, failed: 0 }
  private readonly onAbort = (): void => { this.finish(this.opts.signal?.reason ?? new Error('aborted')) }

  constructor (
    private readonly opts: IterativeLookupOptions,
    private readonly resolve: (o: LookupOutcome) => void,
    private readonly reject: (err: unknown) => void
  ) {}

  begin (): void {
    const { signal } = this.opts
    if (signal?.aborted === true) { this.reject(signal.reason); return }
    signal?.addEventListener('abort', this.onAbort, { once: true })
    this.merge(this.opts.seeds, 0)
    this.pump()
  }

  private merge (contacts: WireContact[], depth: number): void {
    // a hostile peer could answer with thousands: take no more than k
    for (const c of contacts.slice(0, this.opts.k)) {
      if (!isWireContact(c)) continue
      const uuid = c.uuid.toLowerCase()
      if (uuid === this.opts.selfUuid || this.seen.has(uuid)) continue
      this.seen.add(uuid)
      const entry: Entry = { contact: c, id: cachedNodeId(uuid), depth, state: 'new' }
      if (this.targetDepth < 0 && idEquals(entry.id, this.opts.target)) this.targetDepth = depth
      this.insert(entry)
    }
  }

  private insert (e: Entry): void {
    let lo = 0
    let hi = this.entries.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (compareDistance(this.opts.target, (this.entries[mid] as Entry).id, e.id) < 0) lo = mid + 1
      else hi = mid
    }
    this.entries.splice(lo, 0, e)
  }

  /** Fill the request window; end the lookup when there is nothing left to ask. */
  private pump (): void {
    if (this.settled) return
    let window = 0
    for (const e of this.entries) {
      if (this.inflight >= this.opts.alpha || window >= this.opts.k) break
      if (e.state === 'failed') continue
      window++
      if (e.state === 'new') this.launch(e)
    }
    if (this.inflight === 0) this.finish()
  }

  private launch (e: Entry): void {
    e.state = 'pending'
    this.inflight++
    this.stats.queried++
    this.stats.rounds = Math.max(this.stats.rounds, e.depth + 1)
    const scoped = scopedSignal(this.ctl.signal, this.opts.requestTimeout, this.opts.timers)
    this.active.add(scoped)
    raceSignal(this.opts.query(e.contact, scoped.signal), scoped.signal)
      .then(answer => { this.answered(e, answer) }, err => { this.failedQuery(e, err) })
      .finally(() => {
        scoped.dispose()
        this.active.delete(scoped)
        this.inflight--
        this.pump()
      })
  }

  private answered (e: Entry, answer: QueryAnswer): void {
    if (this.settled) return
    e.state = 'ok'
    this.opts.onAnswer?.(e.contact, answer)
    if (answer.stop === true) {
      this.stoppedBy = e.contact
      // the answer came after depth + 1 sequential requests
      this.targetDepth = e.depth + 1
      this.finish()
      return
    }
    this.merge(answer.contacts, e.depth + 1)
  }

  private failedQuery (e: Entry, err: unknown): void {
    if (this.settled) return
    e.state = 'failed'
    this.stats.failed++
    this.opts.onFailure?.(e.contact, err)
  }

  private finish (err?: unknown): void {
    if (this.settled) return
    this.settled = true
    this.opts.signal?.removeEventListener('abort', this.onAbort)
    // clear every request timer now, not a few ticks later when their promises settle
    for (const s of this.active) s.dispose()
    this.ctl.abort(err ?? new Error('lookup finished'))
    if (err !== undefined) { this.reject(err); return }
    this.resolve(this.outcome())
  }

  private outcome (): LookupOutcome {
    const answered = this.entries.filter(e => e.state === 'ok')
    const hit = answered.find(e => idEquals(e.id, this.opts.target))
    const maxDepth = answered.reduce((m, e) => Math.max(m, e.depth), 0)
    const out: LookupOutcome = {
      ...this.stats,
      hops: this.targetDepth >= 0 ? this.targetDepth : maxDepth,
      closest: answered.slice(0, this.opts.k).map(e => e.contact)
    }
    if (hit !== undefined) out.found = hit.contact
    if (this.stoppedBy !== undefined) out.stoppedBy = this.stoppedBy
    return out
  }
}

function isWireContact (c: unknown): c is WireContact {
  const w = c as Partial<WireContact> | null
  return w !== null && typeof w === 'object' && typeof w.uuid === 'string' && w.uuid.length > 0 &&
    Array.isArray(w.addresses) && typeof w.fingerprint === 'string'
}
