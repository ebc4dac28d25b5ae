import { RequestTimeoutError } from './errors.js'

/**
 * The clock the lookup and liveness code wait on. Injected so the simulator
 * can run thousands of timeouts on virtual time, deterministically.
 */
export interface Timers {
  setTimeout: (fn: () => void, ms: number) => unknown
  clearTimeout: (handle: unknown) => void
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => { clearTimeout(h as ReturnType<typeof setTimeout>) }
}

export interface ScopedSignal {
  signal: AbortSignal
  /** clear the timer and detach from the parent; call it when the request settles */
  dispose: () => void
}

/**
 * A signal that aborts when `parent` does or after `ms`, whichever is first.
 * Unlike `AbortSignal.timeout`, the timer is cleared on `dispose()`, so a
 * finished or aborted lookup leaves nothing scheduled behind it.
 */
export function scopedSignal (parent: AbortSignal | undefined, ms: number, timers: Timers): ScopedSignal {
  const ctl = new AbortController()
  const onParent = (): void => { ctl.abort(parent?.reason) }
  const handle = timers.setTimeout(() => { ctl.abort(new RequestTimeoutError(`no answer within ${ms} ms`)) }, ms)
  parent?.addEventListener('abort', onParent, { once: true })
  if (parent?.aborted === true) onParent()
  return {
    signal: ctl.signal,
    dispose: () => {
      timers.clearTimeout(handle)
      parent?.removeEventListener('abort', onParent)
    }
  }
}

/** Reject with `signal.reason` once `signal` aborts; resolve with `p` otherwise. */
export function raceSignal<T> (p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
  })
}
