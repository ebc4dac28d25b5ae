import { createServer } from 'node:net'

/** Poll `fn` until it returns a truthy value or the time runs out. */
export async function waitFor<T> (what: string, fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs
  let last: unknown = null
  while (Date.now() < end) {
    try {
      const v = await fn()
      if (v !== undefined && v !== null && v !== false) return v
    } catch (err) {
      last = err
    }
    await sleep(everyMs)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last !== null ? `: ${(last as Error).message}` : ''}`)
}

export const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** A TCP port that was free a moment ago (peers need stable ports across restarts). */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}
