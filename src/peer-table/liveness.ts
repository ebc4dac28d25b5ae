import type { PeerContact, PeerTable, PingRequest } from './table.js'
import { raceSignal, realTimers, scopedSignal, type Timers } from './timers.js'

export interface LivenessInit {
  /**
   * How long a ping may take before the peer counts as dead, in ms.
   * @default 5000
   */
  pingTimeout?: number
  /**
   * A contact heard from within this many ms is kept without a ping: it just
   * proved itself alive, and pinging it again would only add traffic.
   * @default 60000
   */
  freshFor?: number
}

export interface LivenessComponents {
  table: PeerTable
  /** resolve when `contact` answers; reject (or abort with `signal`) when it does not */
  ping: (contact: Readonly<PeerContact>, signal: AbortSignal) => Promise<void>
  /** @default real timers */
  timers?: Timers
  /** @default Date.now */
  now?: () => number
  /** detached ping/evict work that failed; @default ignore */
  onError?: (err: unknown) => void
}

export interface Liveness {
  start: () => Promise<void>
  stop: () => Promise<void>
  /**
   * Ping `uuid` now and evict it if it does not answer, e.g. after it failed
   * a lookup request. Resolves true when it is alive (or unknown to the table).
   */
  check: (uuid: string) => Promise<boolean>
  /** resolves when no ping is in flight; for tests and orderly shutdown */
  idle: () => Promise<void>
}

export const DEFAULT_PING_TIMEOUT = 5000
export const DEFAULT_FRESH_FOR = 60_000

/**
 * Answers the table's `ping` events the Kademlia way: when a bucket is full,
 * ping its least recently seen contacts; evict those that do not answer and
 * admit the waiting candidate in their place; those that answer stay and move
 * to the most-recent end. Old, proven contacts are preferred over new ones,
 * which is what makes a Kademlia table resist churn and flooding.
 */
class PingEvict implements Liveness {
  private readonly c: LivenessComponents
  private readonly timeout: number
  private readonly freshFor: number
  private readonly timers: Timers
  private readonly now: () => number
  private readonly inflight = new Map<string, Promise<boolean>>()
  private readonly work = new Set<Promise<unknown>>()
  private controller: AbortController | undefined
  private readonly onPing = (req: PingRequest): void => { this.track(this.resolveFull(req)) }

  constructor (init: LivenessInit, components: LivenessComponents) {
    this.c = components
    this.timeout = init.pingTimeout ?? DEFAULT_PING_TIMEOUT
    this.freshFor = init.freshFor ?? DEFAULT_FRESH_FOR
    this.timers = components.timers ?? realTimers
    this.now = components.now ?? Date.now
  }

  async start (): Promise<void> {
    if (this.controller !== undefined) return
    this.controller = new AbortController()
    this.c.table.on('ping', this.onPing)
  }

  async stop (): Promise<void> {
    if (this.controller === undefined) return
    this.c.table.off('ping', this.onPing)
    this.controller.abort(new Error('liveness stopped'))
    this.controller = undefined
    await this.idle()
  }

  async idle (): Promise<void> {
    while (this.work.size > 0 || this.inflight.size > 0) {
      await Promise.allSettled([...this.work, ...this.inflight.values()])
    }
  }

  async check (uuid: string): Promise<boolean> {
    const contact = this.c.table.get(uuid)
    if (contact === undefined) return true
    const p = this.probe(contact)
    this.track(p)
    const alive = await p
    if (!alive) this.c.table.remove(uuid)
    return alive
  }

  private async resolveFull (req: PingRequest): Promise<boolean> {
    const results = await Promise.all(req.oldest.map(async c => {
      const seenAt = c.lastSeen
      return [c, seenAt, await this.probe(c)] as const
    }))
    let evicted = false
    for (const [c, seenAt, alive] of results) {
      if (alive) continue
      // a contact heard from while we waited is alive after all
      const held = this.c.table.get(c.uuid)
      if (held !== undefined && held.lastSeen <= seenAt) evicted = this.c.table.remove(c.uuid) || evicted
    }
    if (evicted && this.controller !== undefined) this.c.table.add(req.candidate)
    return evicted
  }

  /** One ping per contact at a time; concurrent askers share it. */
  private async probe (c: Readonly<PeerContact>): Promise<boolean> {
    if (this.now() - c.lastSeen < this.freshFor) return true
    const pending = this.inflight.get(c.uuid)
    if (pending !== undefined) return await pending
    const p = this.pingOnce(c).finally(() => this.inflight.delete(c.uuid))
    this.inflight.set(c.uuid, p)
    return await p
  }

  private async pingOnce (c: Readonly<PeerContact>): Promise<boolean> {
    const ctl = this.controller
    if (ctl === undefined) return true
    const scoped = scopedSignal(ctl.signal, this.timeout, this.timers)
    try {
      await raceSignal(this.c.ping(c, scoped.signal), scoped.signal)
      this.c.table.touch(c.uuid)
      return true
    } catch {
      // stopping is not evidence of death: keep the contact
      return ctl.signal.aborted
    } finally {
      scoped.dispose()
    }
  }

  /** Detached work must never become an unhandled rejection. */
  private track (p: Promise<unknown>): void {
    const done = p.catch(err => { this.c.onError?.(err) }).finally(() => this.work.delete(done))
    this.work.add(done)
  }
}

/** Create the ping/evict liveness component for `components.table`. */
export function createLiveness (init: LivenessInit, components: LivenessComponents): Liveness {
  return new PingEvict(init, components)
}
