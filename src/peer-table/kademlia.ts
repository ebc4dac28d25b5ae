import { EventEmitter } from 'node:events'
import { NotStartedError, StaleRecordError } from './errors.js'
import { cachedNodeId, idEquals } from './id.js'
import { iterativeLookup, type LookupOutcome, type LookupStats, type QueryAnswer } from './lookup.js'
import { verifyPeerRecord, type RecordVerifier, type SignedPeerRecord } from './record.js'
import type { PeerContact, PeerTable } from './table.js'
import { realTimers, type Timers } from './timers.js'
import type { FindValueAnswer, KadRpcHandler, KadTransport, WireContact } from './transport.js'

export interface KademliaInit {
  /**
   * Lookup width: how many closest peers a lookup must have asked before it
   * ends, and how many contacts an answer carries.
   * @default the table's k (20)
   */
  k?: number
  /**
   * Parallelism: requests in flight per lookup.
   * @default 3
   */
  alpha?: number
  /**
   * Per-request timeout in ms; a peer that misses it counts as failed for this lookup.
   * @default 5000
   */
  requestTimeout?: number
}

/** How a contact reached `admit`: it sent us a request, or a peer named it in an answer. */
export type HeardVia = 'rpc' | 'lookup'

export interface KademliaComponents {
  table: PeerTable
  transport: KadTransport
  /**
   * The admission policy for peers not yet in the table: true lets `contact`
   * in (`table.add`). Peers already in the table are only touched. Without
   * it, nothing the network says adds a peer.
   */
  admit?: (contact: WireContact, via: HeardVia) => boolean
  /** checks the records `findPeer` receives; without one, `findPeer` finds nothing */
  verifier?: RecordVerifier
  /** @default real timers */
  timers?: Timers
}

export interface LookupOptions {
  signal?: AbortSignal
}

export interface FindNodeResult extends LookupStats {
  /** up to k peers that answered, closest to the target first */
  closest: WireContact[]
  /** the peer whose id is the target, if it answered */
  found?: WireContact
}

export interface FindPeerResult extends LookupStats {
  /** the newest verified record the lookup came across, if any */
  record?: SignedPeerRecord
}

export interface KademliaEvents {
  /** a peer did not answer a request in time, or failed it */
  'peer:unresponsive': [WireContact, unknown]
}

export interface Kademlia extends KadRpcHandler {
  readonly k: number
  readonly alpha: number
  start: () => Promise<void>
  stop: () => Promise<void>
  /** iterative FIND_NODE for `target` */
  findNode: (target: Uint8Array, options?: LookupOptions) => Promise<FindNodeResult>
  /** iterative FIND_VALUE for `uuid`'s signed record; applies it to the table when newer */
  findPeer: (uuid: string, options?: LookupOptions) => Promise<FindPeerResult>
  /** join / refresh our neighbourhood: look ourselves up (the table must already hold an introducer) */
  lookupSelf: (options?: LookupOptions) => Promise<FindNodeResult>
  /** the local peer's own record, served to `findValue` for our id */
  setLocalRecord: (record: SignedPeerRecord) => void
  on: EventEmitter<KademliaEvents>['on']
  off: EventEmitter<KademliaEvents>['off']
}

export const DEFAULT_ALPHA = 3
export const DEFAULT_REQUEST_TIMEOUT = 5000

class KademliaService extends EventEmitter<KademliaEvents> implements Kademlia {
  readonly k: number
  readonly alpha: number
  private readonly requestTimeout: number
  private readonly c: KademliaComponents
  private readonly timers: Timers
  private controller: AbortController | undefined
  private localRecord: SignedPeerRecord | undefined

  constructor (init: KademliaInit, components: KademliaComponents) {
    super()
    this.k = init.k ?? components.table.k
    this.alpha = init.alpha ?? DEFAULT_ALPHA
    this.requestTimeout = init.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT
    this.c = components
    this.timers = components.timers ?? realTimers
  }

  async start (): Promise<void> {
    if (this.controller !== undefined) return
    this.controller = new AbortController()
  }

  async stop (): Promise<void> {
    if (this.controller === undefined) return
    this.controller.abort(new NotStartedError('kademlia stopped'))
    this.controller = undefined
  }

  setLocalRecord (record: SignedPeerRecord): void {
    this.localRecord = record
  }

  async findNode (target: Uint8Array, options: LookupOptions = {}): Promise<FindNodeResult> {
    const out = await this.run(target, options, async (to, signal) => {
      return { contacts: await this.c.transport.findNode(target, to, { signal }) }
    })
    const res: FindNodeResult = stats(out, { closest: out.closest })
    if (out.found !== undefined) res.found = out.found
    return res
  }

  async lookupSelf (options: LookupOptions = {}): Promise<FindNodeResult> {
    return await this.findNode(this.c.table.self.id, options)
  }

  async findPeer (uuid: string, options: LookupOptions = {}): Promise<FindPeerResult> {
    let best: SignedPeerRecord | undefined
    const out = await this.run(cachedNodeId(uuid), options, async (to, signal) => {
      const answer = await this.c.transport.findValue(cachedNodeId(uuid), to, { signal })
      if (answer.record === undefined) return { contacts: answer.contacts ?? [] }
      const rec = await this.verified(uuid, answer.record)
      if (rec === undefined) return { contacts: [] }
      if (best === undefined || rec.seq > best.seq) best = rec
      return { contacts: [], stop: true }
    })
    if (best !== undefined) await this.applyIfHeld(uuid, best)
    return stats(out, best === undefined ? {} : { record: best })
  }

  /** A record that fails verification is the sender's problem, not the lookup's: drop it. */
  private async verified (uuid: string, record: unknown): Promise<SignedPeerRecord | undefined> {
    if (this.c.verifier === undefined) return undefined
    try {
      return await verifyPeerRecord(this.c.verifier, record, uuid)
    } catch {
      return undefined
    }
  }

  private async applyIfHeld (uuid: string, record: SignedPeerRecord): Promise<void> {
    if (this.c.table.get(uuid) === undefined) return
    try {
      await this.c.table.applyRecord(uuid, record)
    } catch (err) {
      if (!(err instanceof StaleRecordError)) throw err
    }
  }

  private async run (
    target: Uint8Array,
    options: LookupOptions,
    query: (to: WireContact, signal: AbortSignal) => Promise<QueryAnswer>
  ): Promise<LookupOutcome> {
    if (this.controller === undefined) throw new NotStartedError('kademlia is not started')
    const signals = [this.controller.signal]
    if (options.signal !== undefined) signals.push(options.signal)
    return await iterativeLookup({
      target,
      selfUuid: this.c.table.self.uuid,
      seeds: this.c.table.closest(target, this.k).map(toWire),
      k: this.k,
      alpha: this.alpha,
      requestTimeout: this.requestTimeout,
      timers: this.timers,
      signal: signals.length === 1 ? signals[0] : AbortSignal.any(signals),
      query,
      onAnswer: (from, answer) => { this.heardFrom(from, answer.contacts) },
      onFailure: (to, err) => { this.emit('peer:unresponsive', to, err) }
    })
  }

  /** An answer proves its sender alive; the contacts it names are candidates for admission. */
  private heardFrom (from: WireContact, named: WireContact[]): void {
    this.observe(from, 'rpc')
    if (this.c.admit === undefined) return
    for (const c of named) this.observe(c, 'lookup')
  }

  private observe (contact: WireContact, via: HeardVia): void {
    const { table } = this.c
    if (via === 'rpc' && table.touch(contact.uuid)) return
    if (table.get(contact.uuid) !== undefined) return
    if (this.c.admit?.(contact, via) !== true) return
    const { uuid, addresses, fingerprint } = contact
    // a peer named by a third party was not heard from: it gets no lastSeen credit
    table.add(via === 'rpc' ? { uuid, addresses, fingerprint } : { uuid, addresses, fingerprint, lastSeen: 0 })
  }

  handleFindNode (from: WireContact, target: Uint8Array): WireContact[] {
    this.observe(from, 'rpc')
    return this.closestExcept(target, from.uuid)
  }

  handleFindValue (from: WireContact, key: Uint8Array): FindValueAnswer {
    this.observe(from, 'rpc')
    const { table } = this.c
    if (this.localRecord !== undefined && idEquals(key, table.self.id)) return { record: this.localRecord }
    const held = table.closest(key, 1)[0]
    if (held?.record !== undefined && idEquals(held.id, key)) return { record: held.record }
    return { contacts: this.closestExcept(key, from.uuid) }
  }

  handlePing (from: WireContact): void {
    this.observe(from, 'rpc')
  }

  private closestExcept (target: Uint8Array, uuid: string): WireContact[] {
    const lower = uuid.toLowerCase()
    return this.c.table.closest(target, this.k + 1)
      .filter(c => c.uuid !== lower)
      .slice(0, this.k)
      .map(toWire)
  }
}

function stats<T extends object> (o: LookupStats, rest: T): LookupStats & T {
  return { hops: o.hops, rounds: o.rounds, queried: o.queried, failed: o.failed, ...rest }
}

export function toWire (c: Readonly<PeerContact>): WireContact {
  const w: WireContact = { uuid: c.uuid, addresses: c.addresses, fingerprint: c.fingerprint }
  if (c.record !== undefined) w.record = c.record
  return w
}

/** Create the Kademlia lookup and RPC-handler component over `components.transport`. */
export function createKademlia (init: KademliaInit, components: KademliaComponents): Kademlia {
  return new KademliaService(init, components)
}
