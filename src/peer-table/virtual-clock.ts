import type { Timers } from './timers.js'

interface Pending {
  at: number
  seq: number
  fn: () => void
  cancelled: boolean
}

/**
 * Virtual time for the simulator and tests (not part of the public API). Timers wait here instead of on the real
 * clock; `run()` lets every microtask settle (the in-memory network answers
 * on microtasks) and only then jumps to the next due timer. A 1 s timeout
 * thus costs no wall time, and the order of events never depends on how fast
 * the machine is: the run is deterministic.
 */
export class VirtualClock implements Timers {
  now: number
  private seq = 0
  private queue: Pending[] = []
  private live = 0

  constructor (start: number) {
    this.now = start
  }

  setTimeout (fn: () => void, ms: number): unknown {
    const p: Pending = { at: this.now + Math.max(0, ms), seq: this.seq++, fn, cancelled: false }
    this.queue.push(p)
    this.live++
    // most timers are request timeouts cleared long before they fire: compact now and then
    if (this.queue.length > 4096 && this.queue.length > 4 * this.live) this.queue = this.queue.filter(q => !q.cancelled)
    return p
  }

  clearTimeout (handle: unknown): void {
    const p = handle as Pending
    if (p.cancelled) return
    p.cancelled = true
    this.live--
  }

  /** timers scheduled and not yet fired or cleared */
  get pending (): number {
    return this.live
  }

  /** Drive `work` to completion on virtual time. */
  async run<T> (work: Promise<T>): Promise<T> {
    let done = false
    const watched = work.finally(() => { done = true })
    watched.catch(() => {})
    while (!done) {
      await new Promise(resolve => setImmediate(resolve))
      if (done) break
      const next = this.popNext()
      if (next === undefined) throw new Error('simulation stuck: work pending but no timer due')
      this.now = Math.max(this.now, next.at)
      next.cancelled = true
      this.live--
      next.fn()
    }
    return await watched
  }

  private popNext (): Pending | undefined {
    this.queue = this.queue.filter(p => !p.cancelled)
    if (this.queue.length === 0) return undefined
    let best = 0
    for (let i = 1; i < this.queue.length; i++) {
      const a = this.queue[i] as Pending
      const b = this.queue[best] as Pending
      if (a.at < b.at || (a.at === b.at && a.seq < b.seq)) best = i
    }
    return this.queue.splice(best, 1)[0]
  }
}
