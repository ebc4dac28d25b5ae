import { nowMs } from '../wire/envelope.js'

/** Samples older than this no longer say anything about the peer's clock now. */
const WINDOW_MS = 10 * 60_000
const MAX_SAMPLES = 32

/**
 * How far a peer's clock is from ours, from the `iat` of its authenticated
 * frames (checked before any freshness test, so a skewed peer is still
 * measured). A frame's iat is the peer's time, floored to the second, when it
 * signed the frame; we see it later by the transit and queueing delay. So
 * `iat - now` is never above the true offset and at most one second plus that
 * delay below it: like NTP's minimum-delay filter, the largest recent sample
 * is the best estimate.
 */
export class PeerClock {
  private samples: Array<{ at: number, offset: number }> = []

  record (iatSeconds: number | undefined): void {
    if (iatSeconds === undefined || !Number.isSafeInteger(iatSeconds)) return
    const at = nowMs()
    this.samples.push({ at, offset: iatSeconds - at / 1000 })
    if (this.samples.length > MAX_SAMPLES) this.samples.shift()
  }

  /** Seconds the peer is ahead of us (negative: behind), or null with no recent frame. */
  offsetSeconds (): number | null {
    const since = nowMs() - WINDOW_MS
    this.samples = this.samples.filter((s) => s.at >= since)
    if (this.samples.length === 0) return null
    return Math.round(Math.max(...this.samples.map((s) => s.offset)) * 10) / 10
  }
}
