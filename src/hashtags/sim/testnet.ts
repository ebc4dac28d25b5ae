/**
 * An in-process testnet: many Chord nodes over one in-memory transport,
 * with seeded synthetic addresses. Used by the tests and the simulator.
 */
import { createChordNode, type ChordNode, type ChordNodeInit } from '../ring.js'
import { createIdVerifier, type IdVerifier, type Peer } from '../peer.js'
import { createMemoryTransport, type MemoryTransport } from '../transport.js'
import type { Random } from '../random.js'
import type { Id } from '../ids.js'

export interface Identity { ip: string, domain: string, vserver: number }

/** A random global-unicast IPv6 address in 2001:db8::/32 (documentation range) with its own /64. */
export function randomIdentity (random: Random, vserver = 0): Identity {
  const hex = (): string => random.int(0x10000).toString(16)
  const ip = `2001:db8:${hex()}:${hex()}::${hex()}`
  const name = Array.from({ length: 10 }, () => 'abcdefghijklmnopqrstuvwxyz'[random.int(26)]).join('')
  return { ip, domain: `${name}.example`, vserver }
}

export interface Testnet {
  transport: MemoryTransport
  verifier: IdVerifier
  nodes: ChordNode[]
  /** nodes still in the ring (not left, not killed) */
  live: () => ChordNode[]
  /** join through `via`, or through a random live node */
  add: (identity: Identity, via?: ChordNode) => Promise<ChordNode>
  kill: (node: ChordNode) => void
  leave: (node: ChordNode) => Promise<void>
  /** rounds of stabilise + check predecessor on every live node, then all fingers (unless fingers is false) */
  stabilise: (rounds?: number, fingers?: boolean) => Promise<void>
  /** the true successor of a key among the live nodes */
  trueSuccessor: (key: Id) => Peer
}

export interface TestnetInit {
  ring?: string
  random: Random
  node?: Partial<ChordNodeInit>
  /** copy messages through JSON @default true */
  copy?: boolean
}

export function createTestnet (init: TestnetInit): Testnet {
  const transport = createMemoryTransport({ copy: init.copy ?? true }, { random: init.random })
  const verifier = createIdVerifier()
  const ring = init.ring ?? 'storage'
  const nodes: ChordNode[] = []
  const gone = new Set<ChordNode>()
  const live = (): ChordNode[] => nodes.filter(n => !gone.has(n))
  return {
    transport,
    verifier,
    nodes,
    live,
    async add (identity, via) {
      const node = createChordNode({ ...init.node, ring, ...identity }, { transport, verifier })
      const alive = live()
      const boot = via ?? (alive.length === 0 ? undefined : init.random.pick(alive))
      nodes.push(node)
      if (boot === undefined) node.create()
      else await node.join(boot.peer.info)
      return node
    },
    kill (node) {
      gone.add(node)
      transport.kill(node.address)
    },
    async leave (node) {
      gone.add(node)
      await node.leave()
    },
    async stabilise (rounds = 3, fingers = true) {
      for (let r = 0; r < rounds; r++) {
        for (const n of live()) {
          await n.checkPredecessor()
          await n.stabilise()
        }
      }
      if (fingers) for (const n of live()) await n.fixAllFingers()
    },
    trueSuccessor (key) {
      const sorted = live().map(n => n.peer).sort((a, b) => (a.id < b.id ? -1 : 1))
      return sorted.find(p => p.id >= key) ?? sorted[0] as Peer
    }
  }
}
