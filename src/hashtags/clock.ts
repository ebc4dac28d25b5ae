/**
 * Time as a dependency. Roles never call Date.now or setTimeout directly, so
 * tests and the simulator can run hours of protocol time in milliseconds.
 */

export interface Clock {
  /** milliseconds since the Unix epoch */
  now: () => number
  /** run fn after ms; returns a cancel function */
  setTimer: (fn: () => void, ms: number) => () => void
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => {
    const t = setTimeout(fn, ms)
    t.unref?.()
    return () => { clearTimeout(t) }
  }
}

export interface ManualClock extends Clock {
  /** move time forward, running every timer that falls due, in order */
  advance: (ms: number) => Promise<void>
  /** timers not yet run */
  pending: () => number
}

interface Timer { at: number, seq: number, fn: () => void, cancelled: boolean }

export function createManualClock (start = Date.UTC(2025, 0, 1)): ManualClock {
  let now = start
  let seq = 0
  const timers: Timer[] = []
  const flush = async (): Promise<void> => {
    for (let i = 0; i < 20; i++) await new Promise<void>(resolve => { setImmediate(resolve) })
  }
  return {
    now: () => now,
    setTimer: (fn, ms) => {
      const t: Timer = { at: now + Math.max(0, ms), seq: seq++, fn, cancelled: false }
      timers.push(t)
      return () => { t.cancelled = true }
    },
    pending: () => timers.filter(t => !t.cancelled).length,
    advance: async (ms) => {
      const end = now + ms
      for (;;) {
        const due = timers.filter(t => !t.cancelled && t.at <= end).sort((x, y) => x.at - y.at || x.seq - y.seq)[0]
        if (due === undefined) break
        timers.splice(timers.indexOf(due), 1)
        now = Math.max(now, due.at)
        due.fn()
        await flush()
      }
      now = end
      await flush()
    }
  }
}
