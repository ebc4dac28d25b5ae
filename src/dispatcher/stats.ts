import type { Logger } from '../logger.js'
import { CenterError } from '../errors.js'

/** Counters for `centerctl status` and /metrics. Plain numbers: cheap on the hot path. */
export class Stats {
  eventsIn = 0
  eventsOut = 0
  framesIn = 0
  framesOut = 0
  duplicates = 0
  expiredInOutbox = 0
  readonly refusals: Record<string, number> = {}

  snapshot (): Record<string, unknown> {
    return {
      eventsIn: this.eventsIn,
      eventsOut: this.eventsOut,
      framesIn: this.framesIn,
      framesOut: this.framesOut,
      duplicates: this.duplicates,
      expiredInOutbox: this.expiredInOutbox,
      refusals: { ...this.refusals }
    }
  }
}

export interface RefusalContext {
  peer?: string | null
  event?: string | null
  remote?: string | null
}

/**
 * Every refusal goes through here: one warn line with the peer and event
 * name, one counter. Callers must not log the same refusal again.
 */
export class Refusals {
  private readonly quietUntil = new Map<string, { until: number, suppressed: number }>()

  constructor (private readonly log: Logger, private readonly stats: Stats) {}

  refuse (err: unknown, ctx: RefusalContext): void {
    const code = err instanceof CenterError ? err.code : 'internal'
    this.stats.refusals[code] = (this.stats.refusals[code] ?? 0) + 1
    if (code === 'rate-limited' && this.throttled(ctx.peer ?? ctx.remote ?? '')) return
    if (code === 'internal') {
      this.log.error({ err, peer: ctx.peer ?? null, event: ctx.event ?? null, remote: ctx.remote ?? null }, 'frame handling failed')
      return
    }
    this.log.warn({ code, error: (err as Error).name, reason: (err as Error).message, peer: ctx.peer ?? null, event: ctx.event ?? null, remote: ctx.remote ?? null }, 'refused')
  }

  /**
   * A flooding peer would otherwise flood the journal: one rate-limit line per
   * peer every 10 s, saying how many were refused silently in between (they
   * are all counted in the metrics).
   */
  private throttled (who: string): boolean {
    const now = Date.now()
    const q = this.quietUntil.get(who)
    if (q !== undefined && now < q.until) { q.suppressed++; return true }
    if (q !== undefined && q.suppressed > 0) this.log.warn({ code: 'rate-limited', peer: who, suppressed: q.suppressed }, 'more frames were refused for rate limiting')
    if (this.quietUntil.size > 10_000) this.quietUntil.clear()
    this.quietUntil.set(who, { until: now + 10_000, suppressed: 0 })
    return false
  }
}
