import type { FindValueAnswer, KadRpcHandler, KadTransport, WireContact } from './transport.js'

export interface MemoryNetworkInit {
  /**
   * Round-trip answers through JSON, as a real wire would. The simulator
   * turns it off for speed; nothing in this package mutates what it receives.
   * @default true
   */
  serialize?: boolean
}

/**
 * Many peers in one process. Requests are delivered on a microtask; a failed
 * (or unknown) peer never answers, so the caller sees its own timeout, as it
 * would with a box that dropped off the network without notice.
 */
export interface MemoryNetwork {
  /** attach a peer; returns the transport it sends with */
  join: (self: WireContact, handler: KadRpcHandler) => KadTransport
  /** the peer stops answering, without notice */
  fail: (uuid: string) => void
  /** the peer answers again */
  heal: (uuid: string) => void
  isFailed: (uuid: string) => boolean
  /** requests sent, and requests that went to a failed or unknown peer */
  readonly stats: { requests: number, unanswered: number }
}

export function createMemoryNetwork (init: MemoryNetworkInit = {}): MemoryNetwork {
  const handlers = new Map<string, KadRpcHandler>()
  const failed = new Set<string>()
  const stats = { requests: 0, unanswered: 0 }
  const wire = init.serialize === false ? <T>(x: T): T => x : <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T

  async function deliver<T> (to: WireContact, signal: AbortSignal, call: (h: KadRpcHandler) => T): Promise<T> {
    stats.requests++
    const uuid = to.uuid.toLowerCase()
    const h = handlers.get(uuid)
    if (h === undefined || failed.has(uuid)) {
      stats.unanswered++
      return await never(signal)
    }
    await Promise.resolve()
    signal.throwIfAborted()
    return wire(call(h))
  }

  return {
    stats,
    join (self, handler) {
      const from = wire(self)
      handlers.set(self.uuid.toLowerCase(), handler)
      return {
        findNode: async (target, to, { signal }) => await deliver(to, signal, h => h.handleFindNode(from, Uint8Array.from(target))),
        findValue: async (key, to, { signal }) => await deliver<FindValueAnswer>(to, signal, h => h.handleFindValue(from, Uint8Array.from(key))),
        ping: async (to, { signal }) => { await deliver(to, signal, h => { h.handlePing(from); return null }) }
      }
    },
    fail: (uuid) => { failed.add(uuid.toLowerCase()) },
    heal: (uuid) => { failed.delete(uuid.toLowerCase()) },
    isFailed: (uuid) => failed.has(uuid.toLowerCase())
  }
}

/** A promise that only ever rejects, when `signal` aborts. */
function never (signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    if (signal.aborted) { reject(signal.reason); return }
    signal.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
  })
}
