import { createHash } from 'node:crypto'
import {
  createKademlia, createLiveness, createMemoryNetwork, createPeerTable, toWire,
  type Kademlia, type KademliaInit, type KadRpcHandler, type Liveness, type MemoryNetwork, type PeerTable,
  type RecordVerifier, type Timers, type WireContact
} from '../../src/peer-table/index.js'

/** A deterministic uuid for test peer `i` (v4-shaped, derived from a label). */
export function testUuid (i: number, label = 'peer'): string {
  const h = createHash('sha256').update(`${label}-${i}`).digest('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`
}

export function wireOf (uuid: string): WireContact {
  return { uuid, addresses: [`wss://${uuid.slice(0, 8)}.test:7777`], fingerprint: `fp-${uuid.slice(0, 8)}` }
}

export interface TestPeer {
  uuid: string
  wire: WireContact
  table: PeerTable
  kad: Kademlia
  liveness: Liveness
}

export interface Testnet {
  net: MemoryNetwork
  peers: TestPeer[]
  stop: () => Promise<void>
}

export interface TestnetOptions {
  size: number
  kad?: KademliaInit
  k?: number
  timers?: Timers
  now?: () => number
  verifier?: RecordVerifier
  /** picks the introducer for peer i (< i) */
  rand?: () => number
  /** drive each join lookup (e.g. through a VirtualClock) */
  drive?: <T>(p: Promise<T>) => Promise<T>
}

export function createTestPeer (uuid: string, net: MemoryNetwork, opts: Omit<TestnetOptions, 'size'>): TestPeer {
  const wire = wireOf(uuid)
  const table = createPeerTable({ k: opts.k ?? 20 }, { self: { uuid }, now: opts.now, verifier: opts.verifier })
  let kad: Kademlia | undefined
  const handler: KadRpcHandler = {
    handleFindNode: (f, t) => (kad as Kademlia).handleFindNode(f, t),
    handleFindValue: (f, key) => (kad as Kademlia).handleFindValue(f, key),
    handlePing: (f) => { (kad as Kademlia).handlePing(f) }
  }
  const transport = net.join(wire, handler)
  kad = createKademlia(opts.kad ?? {}, { table, transport, admit: () => true, timers: opts.timers, verifier: opts.verifier })
  const liveness = createLiveness({}, {
    table,
    timers: opts.timers,
    now: opts.now,
    ping: async (c, signal) => { await transport.ping(toWire(c), { signal }) }
  })
  return { uuid, wire, table, kad, liveness }
}

/** N peers joined one by one, each through a pseudo-random earlier peer. */
export async function createTestnet (opts: TestnetOptions): Promise<Testnet> {
  const net = createMemoryNetwork()
  const peers: TestPeer[] = []
  let seed = 12345
  const rand = opts.rand ?? (() => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 })
  const drive = opts.drive ?? (async <T>(p: Promise<T>) => await p)
  for (let i = 0; i < opts.size; i++) {
    const peer = createTestPeer(testUuid(i), net, opts)
    await peer.kad.start()
    await peer.liveness.start()
    if (i > 0) {
      peer.table.add((peers[Math.floor(rand() * peers.length)] as TestPeer).wire)
      await drive(peer.kad.lookupSelf())
    }
    peers.push(peer)
  }
  return {
    net,
    peers,
    stop: async () => {
      for (const p of peers) { await p.liveness.stop(); await p.kad.stop() }
    }
  }
}
