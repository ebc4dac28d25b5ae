/**
 * How hashtag nodes talk. The layer only needs request/response between
 * addresses; the dispatcher service will implement this over its signed,
 * encrypted events, and the simulator uses the in-memory transport below.
 *
 * The transport, not the sender, reports the sender's IP address (`Source`),
 * as a socket does. That is what lets a node check that a peer really owns
 * the address its node ID was derived from.
 */
import { NodeUnreachableError, errorFromWire, errorToWire, MalformedMessageError } from './errors.js'
import type { Random } from './random.js'

export interface Message {
  type: string
  [field: string]: unknown
}

/** What the transport knows about the sender, independent of what it claims. */
export interface Source {
  /** sender's IP address as seen by the transport */
  ip: string
  /** sender's transport address */
  address: string
}

export type Handler = (msg: Message, source: Source) => Promise<unknown>

export interface Listener {
  close: () => void
}

export interface Transport {
  /** serve requests for `address`; `ip` is the address the endpoint is bound to */
  listen: (address: string, ip: string, handler: Handler) => Listener
  /** send one request and wait for its answer; NodeUnreachableError if none */
  request: (from: string, to: string, msg: Message) => Promise<unknown>
}

export interface MemoryTransportInit {
  /**
   * Copy messages and answers through JSON, as a wire would, so no object is
   * shared between nodes. The simulator turns this off for speed.
   * @default true
   */
  copy?: boolean
  /** probability that a request is lost; needs `random` @default 0 */
  dropRate?: number
}

export interface MemoryTransportComponents {
  random?: Random
}

export interface MemoryTransport extends Transport {
  /** make an endpoint stop answering without closing it (a crash) */
  kill: (address: string) => void
  revive: (address: string) => void
  /**
   * Split the network: requests between addresses in different groups fail.
   * Addresses in no group can reach everyone. Call with no groups to heal.
   */
  partition: (groups: Array<Set<string>>) => void
  setDropRate: (p: number) => void
  isUp: (address: string) => boolean
  /** requests sent, by message type */
  readonly stats: Map<string, number>
}

interface Endpoint { ip: string, handler: Handler }

export function createMemoryTransport (init: MemoryTransportInit = {}, components: MemoryTransportComponents = {}): MemoryTransport {
  const copy = init.copy ?? true
  let dropRate = init.dropRate ?? 0
  const endpoints = new Map<string, Endpoint>()
  const dead = new Set<string>()
  let groups: Array<Set<string>> = []
  const stats = new Map<string, number>()

  const groupOf = (address: string): number => groups.findIndex(g => g.has(address))
  const reachable = (from: string, to: string): boolean => {
    if (dead.has(to) || dead.has(from) || !endpoints.has(to)) return false
    const a = groupOf(from)
    const b = groupOf(to)
    return a === -1 || b === -1 || a === b
  }
  const clone = <T>(v: T): T => (copy && v !== undefined ? JSON.parse(JSON.stringify(v)) as T : v)

  return {
    stats,
    listen (address, ip, handler) {
      if (endpoints.has(address)) throw new MalformedMessageError(`address ${address} is already bound`)
      endpoints.set(address, { ip, handler })
      return { close: () => { endpoints.delete(address) } }
    },
    async request (from, to, msg) {
      stats.set(msg.type, (stats.get(msg.type) ?? 0) + 1)
      await Promise.resolve()
      const sender = endpoints.get(from)
      const target = endpoints.get(to)
      const lost = dropRate > 0 && components.random !== undefined && components.random.next() < dropRate
      if (target === undefined || sender === undefined || lost || !reachable(from, to)) {
        throw new NodeUnreachableError(`${to} did not answer`)
      }
      let answer: unknown
      try {
        answer = await target.handler(clone(msg), { ip: sender.ip, address: from })
      } catch (err) {
        throw errorFromWire(clone(errorToWire(err)) as Record<string, unknown>)
      }
      if (dead.has(to)) throw new NodeUnreachableError(`${to} did not answer`)
      return clone(answer)
    },
    kill: (address) => { dead.add(address) },
    revive: (address) => { dead.delete(address) },
    partition: (g) => { groups = g },
    setDropRate: (p) => { dropRate = p },
    isUp: (address) => endpoints.has(address) && !dead.has(address)
  }
}
