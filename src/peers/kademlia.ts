import { randomBytes } from 'node:crypto'
import { NotFoundError, NotRunningError, SchemaError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { Dispatcher } from '../dispatcher/index.js'
import type { Identity } from '../identity/files.js'
import { createKademlia, type Kademlia, type FindNodeResult } from '../peer-table/kademlia.js'
import { createPeerTable, type PeerTable } from '../peer-table/table.js'
import { idToHex, nodeIdOf } from '../peer-table/id.js'
import type { FindValueAnswer, KadRequestOptions, KadTransport, WireContact } from '../peer-table/transport.js'
import { PEERS_SERVICE } from '../services/registry.js'
import { ADDRESS, isUuid } from '../wire/frame.js'
import type { PeerDirectory, PeerInfo } from './directory.js'

/** The Kademlia events `center-peers` sends and receives (protocol.md §8.8). */
export const KAD_EVENTS = ['kad-find-node', 'kad-nodes'] as const

export interface PeerLookupInit {
  /** bucket size and answer size; @default 20 */
  k?: number
  /** requests in flight per lookup; @default 3 */
  alpha?: number
  /** a peer that has not answered in this time counts as failed for the lookup; @default 10 000 */
  requestTimeoutMs?: number
}

export interface PeerLookupComponents {
  identity: Identity
  peers: PeerDirectory
  dispatcher: Pick<Dispatcher, 'submit'>
  logger: Logger
}

/** a request that waits in an outbox longer than this is useless to the lookup that sent it */
const REQUEST_TTL_SECONDS = 30
const MAX_CONTACTS = 64
const HEX_ID = /^[0-9a-f]{40}$/
const REQUEST_ID = /^[0-9a-f]{32}$/

interface Pending { peer: string, resolve: (c: WireContact[]) => void, reject: (e: unknown) => void }

/**
 * The Kademlia library (src/peer-table/) over the dispatcher: FIND_NODE is a
 * `kad-find-node` event to a peer, answered with a `kad-nodes` event, both
 * signed and encrypted like every event. The table holds exactly the active
 * admitted peers (`admit` refuses everything a lookup hears of: RFC 3 lets
 * only admitted peers in). As events go only to admitted peers, a lookup asks
 * only those; contacts it hears of are returned, never dialled.
 */
export class PeerLookup {
  readonly table: PeerTable
  readonly kad: Kademlia
  private readonly pending = new Map<string, Pending>()
  private started = false

  constructor (init: PeerLookupInit, private readonly c: PeerLookupComponents) {
    this.table = createPeerTable({ k: init.k }, { self: { uuid: c.identity.uuid } })
    this.kad = createKademlia({ k: init.k, alpha: init.alpha, requestTimeout: init.requestTimeoutMs ?? 10_000 }, { table: this.table, transport: this.transport, admit: () => false })
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.table.start()
    for (const p of this.c.peers.activeList()) this.put(p)
    this.c.peers.on('admitted', this.put)
    this.c.peers.on('updated', this.put)
    this.c.peers.on('address', this.put)
    await this.kad.start()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.c.peers.off('admitted', this.put)
    this.c.peers.off('updated', this.put)
    this.c.peers.off('address', this.put)
    await this.kad.stop()
    await this.table.stop()
    for (const p of this.pending.values()) p.reject(new NotRunningError('peer lookups stopped'))
    this.pending.clear()
  }

  private readonly put = (p: PeerInfo): void => {
    if (p.state !== 'active') { this.table.remove(p.uuid); return }
    this.table.add({ uuid: p.uuid, addresses: [p.address], fingerprint: p.fingerprint })
  }

  /** A peer was banned here: it leaves the table. */
  forget (uuid: string): void { this.table.remove(uuid) }

  /** Iterative FIND_NODE for a UUID's node id (or a raw 20-byte id). */
  async findNode (target: string | Uint8Array): Promise<FindNodeResult> {
    if (!this.started) throw new NotRunningError('peer lookups are not running')
    return await this.kad.findNode(typeof target === 'string' ? nodeIdOf(target) : target)
  }

  // ---- KadTransport: the requesting side ------------------------------------------

  async request (target: Uint8Array, to: WireContact, options: KadRequestOptions): Promise<WireContact[]> {
    if (this.c.peers.active(to.uuid) === undefined) throw new NotFoundError(`${to.uuid} is not an admitted peer; events go only to those`)
    options.signal.throwIfAborted()
    const id = randomBytes(16).toString('hex')
    const answer = new Promise<WireContact[]>((resolve, reject) => {
      this.pending.set(id, { peer: to.uuid, resolve, reject })
      options.signal.addEventListener('abort', () => { this.pending.delete(id); reject(options.signal.reason) }, { once: true })
    })
    await this.c.dispatcher.submit(PEERS_SERVICE, [{ name: 'kad-find-node', to: to.uuid, data: { id, target: idToHex(target) }, ttlSeconds: REQUEST_TTL_SECONDS }])
    return await answer
  }

  /** what the library calls; FIND_VALUE and PING are FIND_NODE requests for now */
  readonly transport: KadTransport = {
    findNode: async (target: Uint8Array, to: WireContact, options: KadRequestOptions) => await this.request(target, to, options),
    // no values are served over the wire yet: a FIND_VALUE is asked as FIND_NODE
    findValue: async (key: Uint8Array, to: WireContact, options: KadRequestOptions): Promise<FindValueAnswer> => ({ contacts: await this.request(key, to, options) }),
    ping: async (to: WireContact, options: KadRequestOptions): Promise<void> => { await this.request(nodeIdOf(to.uuid), to, options) }
  }

  // ---- the answering side (called by PeerNetwork for events from active peers) ----

  async onEvent (from: string, name: string, data: Record<string, unknown>): Promise<void> {
    const id = data?.id
    if (typeof id !== 'string' || !REQUEST_ID.test(id)) throw new SchemaError(`${name} data.id must be 32 hex digits`)
    if (name === 'kad-find-node') {
      const target = data.target
      if (typeof target !== 'string' || !HEX_ID.test(target)) throw new SchemaError('kad-find-node data.target must be a 40-hex-digit node id')
      const peer = this.c.peers.active(from) as PeerInfo
      const contacts = this.kad.handleFindNode({ uuid: from, addresses: [peer.address], fingerprint: peer.fingerprint }, Buffer.from(target, 'hex'))
      await this.c.dispatcher.submit(PEERS_SERVICE, [{ name: 'kad-nodes', to: from, data: { id, contacts: contacts.map(({ uuid, addresses, fingerprint }) => ({ uuid, addresses, fingerprint })) }, ttlSeconds: REQUEST_TTL_SECONDS }])
      return
    }
    const p = this.pending.get(id)
    // an answer nobody waits for (the lookup ended, or we restarted): nothing to do
    if (p === undefined) return
    if (p.peer !== from) throw new SchemaError(`kad-nodes ${id} from ${from}, but the request went to ${p.peer}`)
    this.pending.delete(id)
    p.resolve(checkContacts(data.contacts))
  }
}

function checkContacts (v: unknown): WireContact[] {
  if (!Array.isArray(v) || v.length > MAX_CONTACTS) throw new SchemaError(`kad-nodes data.contacts must be an array of at most ${MAX_CONTACTS}`)
  return v.map((c: any) => {
    if (!isUuid(c?.uuid)) throw new SchemaError('contact uuid must be a lowercase UUID')
    if (!Array.isArray(c.addresses) || c.addresses.length > 16 || !c.addresses.every((a: unknown) => typeof a === 'string' && ADDRESS.test(a))) throw new SchemaError('contact addresses must be at most 16 HOST:PORT')
    if (typeof c.fingerprint !== 'string' || !/^[0-9a-f]{40,64}$/.test(c.fingerprint)) throw new SchemaError('contact fingerprint must be hex')
    return { uuid: c.uuid, addresses: [...c.addresses], fingerprint: c.fingerprint }
  })
}
