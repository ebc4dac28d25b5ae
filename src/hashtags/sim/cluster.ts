/**
 * A cluster of whole instances in one process: each has a node on the relay
 * ring and one on the storage ring, both roles, a client and an inbox.
 */
import { createHash } from 'node:crypto'
import { createChordNode, type ChordNode } from '../ring.js'
import { createIdVerifier } from '../peer.js'
import { createMemoryTransport, type MemoryTransport } from '../transport.js'
import { createStorageRole, type StorageInit, type StorageRole } from '../storage.js'
import { createRelayRole, type RelayInit, type RelayRole } from '../relay.js'
import { createHashtagClient, createInbox, type HashtagClient, type Inbox } from '../client.js'
import { createKeyDirectory, createSigner } from '../redundancy.js'
import type { ManualClock } from '../clock.js'
import type { Random } from '../random.js'
import { randomIdentity, type Identity } from './testnet.js'
import type { Id } from '../ids.js'

export interface Instance {
  identity: Identity
  relayNode: ChordNode
  storageNode: ChordNode
  relay: RelayRole
  storage: StorageRole
  client: HashtagClient
  inbox: Inbox
  alive: boolean
}

export interface ClusterInit {
  random: Random
  clock: ManualClock
  storage?: StorageInit
  relay?: RelayInit | ((i: number) => RelayInit)
  /** fetch failures injected into inboxes (probability) @default 0 */
  fetchFailRate?: number
}

export interface Cluster {
  transport: MemoryTransport
  clock: ManualClock
  instances: Instance[]
  live: () => Instance[]
  add: () => Promise<Instance>
  kill: (inst: Instance) => void
  /** rounds of ring maintenance on both rings, then all fingers */
  stabilise: (rounds?: number) => Promise<void>
  /** the instance whose storage (or relay) node owns a ring position */
  storageOwner: (location: Id) => Instance
  relayOwner: (location: Id) => Instance
}

export function createCluster (init: ClusterInit): Cluster {
  const { random, clock } = init
  const transport = createMemoryTransport({}, { random })
  const verifier = createIdVerifier()
  const keys = createKeyDirectory()
  const instances: Instance[] = []
  const live = (): Instance[] => instances.filter(i => i.alive)

  const add = async (): Promise<Instance> => {
    const identity = randomIdentity(random)
    const relayNode = createChordNode({ ring: 'relay', ...identity }, { transport, verifier, clock })
    const storageNode = createChordNode({ ring: 'storage', ...identity }, { transport, verifier, clock })
    const boot = live().length === 0 ? undefined : random.pick(live())
    if (boot === undefined) { relayNode.create(); storageNode.create() } else {
      await relayNode.join(boot.relayNode.peer.info)
      await storageNode.join(boot.storageNode.peer.info)
      // a new node stabilises at once, as its first periodic round would
      await relayNode.stabilise()
      await storageNode.stabilise()
    }
    const signer = createSigner(createHash('sha256').update(relayNode.peer.info.id).digest())
    keys.add(relayNode.peer.info.id, signer.publicKey)
    const relayInit = typeof init.relay === 'function' ? init.relay(instances.length) : init.relay ?? {}
    const relay = createRelayRole(relayInit, { node: relayNode, storage: storageNode, transport, clock, signer, keys })
    const storage = createStorageRole(init.storage ?? {}, { node: storageNode, clock })
    const address = `inbox@${identity.domain}`
    const failRate = init.fetchFailRate ?? 0
    const inbox = createInbox({ address, ip: identity.ip }, {
      transport, clock, random,
      fetchPosts: async uris => uris.filter(() => random.next() < failRate)
    })
    const client = createHashtagClient({ inbox: address }, { relay: relayNode, storage: storageNode, clock, random })
    const inst: Instance = { identity, relayNode, storageNode, relay, storage, client, inbox, alive: true }
    instances.push(inst)
    return inst
  }

  const ownerBy = (pick: (i: Instance) => ChordNode) => (location: Id): Instance => {
    const sorted = live().sort((a, b) => (pick(a).peer.id < pick(b).peer.id ? -1 : 1))
    return sorted.find(i => pick(i).peer.id >= location) ?? sorted[0] as Instance
  }

  return {
    transport,
    clock,
    instances,
    live,
    add,
    kill (inst) {
      inst.alive = false
      transport.kill(inst.relayNode.address)
      transport.kill(inst.storageNode.address)
      transport.kill(`inbox@${inst.identity.domain}`)
    },
    async stabilise (rounds = 3) {
      for (let r = 0; r < rounds; r++) {
        for (const i of live()) {
          for (const n of [i.relayNode, i.storageNode]) {
            await n.checkPredecessor()
            await n.stabilise()
          }
        }
      }
      for (const i of live()) { await i.relayNode.fixAllFingers(); await i.storageNode.fixAllFingers() }
    },
    storageOwner: ownerBy(i => i.storageNode),
    relayOwner: ownerBy(i => i.relayNode)
  }
}
