/**
 * A FIFO async lock. libsignal has no locking of its own: two concurrent
 * encrypts on one session reuse a counter, so every session is used under one.
 */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve()

  async run<T> (fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn)
    this.tail = result.catch(() => {})
    return await result
  }
}

/** One Mutex per key, created on first use. */
export class KeyedMutex {
  private readonly locks = new Map<string, Mutex>()

  async run<T> (key: string, fn: () => Promise<T>): Promise<T> {
    let m = this.locks.get(key)
    if (m === undefined) {
      m = new Mutex()
      this.locks.set(key, m)
    }
    return await m.run(fn)
  }
}
