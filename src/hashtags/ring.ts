/**
 * One Chord node on one ring (paper §5.3-5.6, figures 1-2): join through a
 * bootstrap node, stabilise/notify, fingers, successor list, predecessor
 * failure detection, ring-split detection, voluntary leave with key handover,
 * and iterative lookups in which the querier verifies every node ID itself.
 */
import {
  ForgedNodeIdError, HashtagError, LookupFailedError, LookupLoopError, MalformedMessageError,
  NodeUnreachableError, NotJoinedError, UnknownMessageError
} from './errors.js'
import { M, inHalfOpen, inOpen, idToHex, parseId, ringAdd, ringDistance, type Id } from './ids.js'
import { addressOf, createIdVerifier, sameIp, selfPeer, type IdVerifier, type Peer, type PeerInfo } from './peer.js'
import type { Clock } from './clock.js'
import type { Handler, Listener, Message, Source, Transport } from './transport.js'

export interface ChordNodeInit {
  /** name of the ring (`relay` or `storage`); rings are independent name spaces */
  ring: string
  ip: string
  domain: string
  /** @default 0 */
  vserver?: number
  /** successors remembered, for resilience against failures @default 8 */
  successorListSize?: number
  /** a lookup longer than this is treated as a loop @default 64 */
  maxHops?: number
  /** candidates a node returns per lookup step, so the querier can route around failures @default 4 */
  candidatesPerStep?: number
  /** drop finger entries whose /64 or registered domain is already in the table (§8.4) @default true */
  evictDuplicates?: boolean
  /** period of stabilise/check-predecessor/fix-fingers once started with a clock; 0 = manual @default 0 */
  maintenanceIntervalMs?: number
}

export interface ChordNodeComponents {
  transport: Transport
  /** shared verifier (it caches); @default a private one */
  verifier?: IdVerifier
  clock?: Clock
  /** where background errors go; @default dropped */
  onError?: (err: unknown) => void
}

/** Data a role keeps per ring location; moved when responsibility moves. */
export interface RangeData {
  /** records whose location satisfies the predicate */
  select: (pick: (location: Id) => boolean) => unknown[]
  remove: (records: unknown[]) => void
  accept: (records: unknown[], from: Peer) => void
}

export interface LookupOptions {
  /** ping the answer and route around it if it is dead @default false */
  alive?: boolean
}

export interface LookupResult {
  node: Peer
  /** remote nodes asked */
  hops: number
}

export interface ChordNode {
  readonly ring: string
  readonly peer: Peer
  readonly address: string
  start: () => void
  /** stop answering; safe to call twice */
  stop: () => void
  /** start a new ring with this node alone */
  create: () => void
  join: (bootstrap: PeerInfo) => Promise<void>
  stabilise: () => Promise<void>
  checkPredecessor: () => Promise<void>
  /** refresh the next finger (one lookup) */
  fixFingers: () => Promise<void>
  /** refresh every distinct finger (about log2 N lookups) */
  fixAllFingers: () => Promise<void>
  /** look our own ID up through `via`; repair if another ring answers (§5.3); true if a split was seen */
  checkRingSplit: (via: PeerInfo) => Promise<boolean>
  lookup: (key: Id, opts?: LookupOptions) => Promise<LookupResult>
  /** voluntary leave: hand all data to the successor, then tell both neighbours */
  leave: () => Promise<void>
  successor: () => Peer
  predecessor: () => Peer | null
  successorList: () => Peer[]
  fingerPeers: () => Peer[]
  /** does this node own ring position `location` (it is in (predecessor, self])? */
  owns: (location: Id) => boolean
  /** serve an application message type on this node's address */
  handle: (type: string, handler: (msg: Message, source: Source) => Promise<unknown>) => void
  /** send a request to another node of this ring */
  call: (to: PeerInfo, msg: Message) => Promise<unknown>
  attachData: (data: RangeData) => void
  /** verify a peer named by an untrusted message */
  verify: (value: unknown) => Peer
  /**
   * Install the routing state stabilisation converges to, from a sorted list
   * of every node. Only for the simulator's large rings; tests use the protocol.
   */
  adoptConvergedState: (sorted: Peer[]) => void
}

const RING_KINDS = /^[a-z][a-z0-9-]{0,31}$/

export function createChordNode (init: ChordNodeInit, components: ChordNodeComponents): ChordNode {
  if (!RING_KINDS.test(init.ring)) throw new MalformedMessageError('ring name must be a short lowercase word')
  return new Chord(init, components)
}

class Chord implements ChordNode {
  readonly ring: string
  readonly peer: Peer
  readonly address: string
  private readonly transport: Transport
  private readonly verifier: IdVerifier
  private readonly clock: Clock | undefined
  private readonly onError: (err: unknown) => void
  private readonly r: number
  private readonly maxHops: number
  private readonly perStep: number
  private readonly evict: boolean
  private readonly interval: number
  private successors: Peer[]
  private pred: Peer | null = null
  /** finger[i] = successor(self + 2^i) as found; `fingers` is it after duplicate eviction */
  private readonly raw: Array<Peer | undefined> = new Array<Peer | undefined>(M).fill(undefined)
  private readonly fingers: Array<Peer | undefined> = new Array<Peer | undefined>(M).fill(undefined)
  private fingerCache: Peer[] = []
  private nextFinger = 0
  private readonly handlers = new Map<string, Handler>()
  private listener: Listener | undefined
  private data: RangeData | undefined
  private joined = false
  private cancelTimer: (() => void) | undefined

  constructor (init: ChordNodeInit, components: ChordNodeComponents) {
    this.ring = init.ring
    this.peer = selfPeer(init.ip, init.domain, init.vserver ?? 0)
    this.address = addressOf(this.ring, this.peer.info)
    this.transport = components.transport
    this.verifier = components.verifier ?? createIdVerifier()
    this.clock = components.clock
    this.onError = components.onError ?? (() => {})
    this.r = init.successorListSize ?? 8
    this.maxHops = init.maxHops ?? 64
    this.perStep = init.candidatesPerStep ?? 4
    this.evict = init.evictDuplicates ?? true
    this.interval = init.maintenanceIntervalMs ?? 0
    this.successors = [this.peer]
    this.registerProtocol()
  }

  // ------------------------------------------------------------ lifecycle

  start (): void {
    if (this.listener !== undefined) return
    this.listener = this.transport.listen(this.address, this.peer.info.ip, async (msg, source) => await this.dispatch(msg, source))
    this.scheduleMaintenance()
  }

  stop (): void {
    this.cancelTimer?.()
    this.cancelTimer = undefined
    this.listener?.close()
    this.listener = undefined
  }

  private scheduleMaintenance (): void {
    if (this.clock === undefined || this.interval <= 0) return
    this.cancelTimer = this.clock.setTimer(() => {
      this.maintain().catch(this.onError).finally(() => { if (this.listener !== undefined) this.scheduleMaintenance() })
    }, this.interval)
  }

  private async maintain (): Promise<void> {
    if (!this.joined) return
    await this.stabilise()
    await this.checkPredecessor()
    await this.fixFingers()
  }

  create (): void {
    this.start()
    this.successors = [this.peer]
    this.pred = null
    this.joined = true
  }

  async join (bootstrap: PeerInfo): Promise<void> {
    this.start()
    const boot = this.verifier.verify(bootstrap)
    const res = await this.request(boot.info, { type: 'join', node: this.peer.info }) as { successor?: unknown }
    const succ = this.verifier.verify(res.successor)
    this.successors = [succ]
    this.pred = null
    this.joined = true
    if (await this.refreshSuccessorList(succ)) return
    // the bootstrap's view was stale (its answer is dead): route ourselves through it
    const found = await this.route(this.peer.id, [boot], true)
    this.successors = [found.node]
    await this.refreshSuccessorList(found.node)
  }

  // ------------------------------------------------------------ accessors

  successor (): Peer { return this.successors[0] ?? this.peer }
  predecessor (): Peer | null { return this.pred }
  successorList (): Peer[] { return [...this.successors] }
  fingerPeers (): Peer[] { return [...this.fingerCache] }

  owns (location: Id): boolean {
    return this.pred === null ? true : inHalfOpen(location, this.pred.id, this.peer.id)
  }

  verify (value: unknown): Peer { return this.verifier.verify(value) }

  handle (type: string, handler: (msg: Message, source: Source) => Promise<unknown>): void {
    if (this.handlers.has(type)) throw new MalformedMessageError(`handler for ${type} already set`)
    this.handlers.set(type, handler)
  }

  attachData (data: RangeData): void { this.data = data }

  async call (to: PeerInfo, msg: Message): Promise<unknown> { return await this.request(to, msg) }

  private async request (to: PeerInfo, msg: Message): Promise<unknown> {
    return await this.transport.request(this.address, addressOf(this.ring, to), msg)
  }

  private async dispatch (msg: Message, source: Source): Promise<unknown> {
    if (typeof msg !== 'object' || msg === null || typeof msg.type !== 'string') {
      throw new MalformedMessageError('message has no type')
    }
    const handler = this.handlers.get(msg.type)
    if (handler === undefined) throw new UnknownMessageError(`unknown message type ${msg.type.slice(0, 40)}`)
    return await handler(msg, source)
  }

  /** the sender must be the node it names: same IP as the transport saw */
  private verifySender (value: unknown, source: Source): Peer {
    const peer = this.verifier.verify(value)
    if (!sameIp(peer.info.ip, source.ip)) {
      throw new ForgedNodeIdError(`message names node ${peer.info.ip} but came from ${source.ip}`)
    }
    return peer
  }

  // ------------------------------------------------------------ protocol handlers

  private registerProtocol (): void {
    this.handlers.set('ping', async () => ({ ok: true }))
    this.handlers.set('join', async (msg, source) => {
      this.requireJoined()
      const joiner = this.verifySender(msg.node, source)
      const res = await this.lookup(joiner.id)
      return { successor: res.node.info }
    })
    this.handlers.set('neighbours', async () => ({
      predecessor: this.pred?.info ?? null,
      successors: this.successors.map(p => p.info)
    }))
    this.handlers.set('notify', async (msg, source) => {
      const node = this.verifySender(msg.node, source)
      await this.notified(node)
      return { ok: true }
    })
    this.handlers.set('step', async (msg) => {
      const avoid = Array.isArray(msg.avoid) ? msg.avoid.slice(0, 16).map(parseId) : []
      return this.step(parseId(msg.key), new Set(avoid))
    })
    this.handlers.set('find', async (msg) => {
      this.requireJoined()
      const res = await this.lookup(parseId(msg.key))
      return { node: res.node.info, hops: res.hops }
    })
    this.handlers.set('leaving', async (msg, source) => {
      const node = this.verifySender(msg.node, source)
      this.neighbourLeaving(node, msg)
      return { ok: true }
    })
    this.handlers.set('handover', async (msg, source) => {
      const from = this.verifySender(msg.node, source)
      if (!Array.isArray(msg.records)) throw new MalformedMessageError('handover.records must be a list')
      this.data?.accept(msg.records, from)
      return { ok: true }
    })
  }

  private requireJoined (): void {
    if (!this.joined) throw new NotJoinedError('this node has not joined a ring')
  }

  /** one step of someone else's lookup, skipping nodes the asker found dead */
  private step (key: Id, avoid: Set<Id>): { done: boolean, nodes: PeerInfo[] } {
    const succ = this.successors.find(p => !avoid.has(p.id)) ?? this.peer
    if (succ.id === this.peer.id || inHalfOpen(key, this.peer.id, succ.id)) {
      return { done: true, nodes: [succ.info] }
    }
    const nodes = this.closestPreceding(key, this.perStep + avoid.size, avoid).slice(0, this.perStep)
    return { done: false, nodes: nodes.map(p => p.info) }
  }

  private async notified (node: Peer): Promise<void> {
    if (node.id === this.peer.id) return
    if (this.successor().id === this.peer.id) this.successors = [node]
    if (this.pred !== null && !inOpen(node.id, this.pred.id, this.peer.id)) return
    this.pred = node
    await this.handOver(node, loc => !inHalfOpen(loc, node.id, this.peer.id))
  }

  /** send the records picked to `to`; they are removed here only once it accepted them */
  private async handOver (to: Peer, pick: (location: Id) => boolean): Promise<void> {
    if (this.data === undefined) return
    const records = this.data.select(pick)
    if (records.length === 0) return
    await this.request(to.info, { type: 'handover', node: this.peer.info, records })
    this.data.remove(records)
  }

  private neighbourLeaving (node: Peer, msg: Message): void {
    if (node.id === this.successor().id) {
      const theirs = Array.isArray(msg.successors) ? msg.successors : []
      const next = this.verifyAll(theirs).filter(p => p.id !== node.id)
      this.successors = this.cleanSuccessors([...next, ...this.successors.filter(p => p.id !== node.id)])
    }
    if (this.pred !== null && node.id === this.pred.id) {
      this.pred = msg.predecessor === null || msg.predecessor === undefined ? null : this.tryVerify(msg.predecessor)
      if (this.pred?.id === this.peer.id) this.pred = null
    }
    this.forget(node)
  }

  // ------------------------------------------------------------ maintenance

  async stabilise (): Promise<void> {
    this.requireJoined()
    for (let attempt = 0; attempt <= 2 * this.r + 8; attempt++) {
      let succ = this.successor()
      if (succ.id === this.peer.id) {
        if (this.pred === null || this.pred.id === this.peer.id) return
        this.successors = [this.pred]
        succ = this.pred
      }
      let res: { predecessor: unknown, successors: unknown }
      try {
        res = await this.request(succ.info, { type: 'neighbours' }) as typeof res
      } catch (err) {
        if (!(err instanceof NodeUnreachableError)) throw err
        this.forget(succ)
        continue
      }
      const x = res.predecessor === null ? null : this.tryVerify(res.predecessor)
      if (x !== null && inOpen(x.id, this.peer.id, succ.id)) {
        // walk back as long as the new successor knows a closer predecessor,
        // instead of one step per period: joins settle in one round
        if (await this.refreshSuccessorList(x)) continue
        this.adoptSuccessorList(succ, res.successors)
      } else {
        this.adoptSuccessorList(succ, res.successors)
      }
      await this.request(succ.info, { type: 'notify', node: this.peer.info }).catch(this.onError)
      return
    }
  }

  private async refreshSuccessorList (succ: Peer): Promise<boolean> {
    try {
      const res = await this.request(succ.info, { type: 'neighbours' }) as { successors: unknown }
      this.adoptSuccessorList(succ, res.successors)
      return true
    } catch (err) {
      if (err instanceof HashtagError) return false
      throw err
    }
  }

  private adoptSuccessorList (succ: Peer, theirs: unknown): void {
    const list = Array.isArray(theirs) ? this.verifyAll(theirs) : []
    this.successors = this.cleanSuccessors([succ, ...list])
  }

  private cleanSuccessors (list: Peer[]): Peer[] {
    const seen = new Set<Id>()
    const out: Peer[] = []
    for (const p of list) {
      if (p.id === this.peer.id || seen.has(p.id)) continue
      seen.add(p.id)
      out.push(p)
    }
    out.sort((a, b) => cmp(ringDistance(this.peer.id, a.id), ringDistance(this.peer.id, b.id)))
    return out.length === 0 ? [this.peer] : out.slice(0, this.r)
  }

  async checkPredecessor (): Promise<void> {
    if (this.pred === null) return
    const pred = this.pred
    try {
      await this.request(pred.info, { type: 'ping' })
    } catch (err) {
      if (!(err instanceof NodeUnreachableError)) throw err
      if (this.pred === pred) this.pred = null
      this.forget(pred)
    }
  }

  async fixFingers (): Promise<void> {
    this.requireJoined()
    const i = this.nextFinger
    const f = (await this.lookup(ringAdd(this.peer.id, 1n << BigInt(i)))).node
    // every finger whose start falls in (self, f] is f as well: skip them
    let j = i + 1
    this.raw[i] = f
    while (j < M && inHalfOpen(ringAdd(this.peer.id, 1n << BigInt(j)), this.peer.id, f.id)) this.raw[j++] = f
    this.deriveFingers()
    this.nextFinger = j % M
  }

  async fixAllFingers (): Promise<void> {
    this.requireJoined()
    this.nextFinger = 0
    do {
      await this.fixFingers()
    } while (this.nextFinger !== 0)
  }

  /**
   * The finger table proper is the raw one with §8.4 applied: one entry per
   * /64 and per registered domain, the closest one kept, our own excluded.
   */
  private deriveFingers (): void {
    const subnets = new Set<string>([this.peer.subnet])
    const domains = new Set<string>([this.peer.regDomain])
    let last: Id | undefined
    for (let i = 0; i < M; i++) {
      const f = this.raw[i]
      if (f === undefined || f.id === this.peer.id) { this.fingers[i] = undefined; continue }
      const dup = f.id !== last && (subnets.has(f.subnet) || domains.has(f.regDomain))
      if (this.evict && dup) { this.fingers[i] = undefined; continue }
      this.fingers[i] = f
      last = f.id
      subnets.add(f.subnet)
      domains.add(f.regDomain)
    }
    this.rebuildFingerCache()
  }

  private rebuildFingerCache (): void {
    const seen = new Set<Id>()
    this.fingerCache = []
    for (const f of this.fingers) {
      if (f !== undefined && !seen.has(f.id)) { seen.add(f.id); this.fingerCache.push(f) }
    }
  }

  private forget (peer: Peer): void {
    if (peer.id === this.peer.id) return
    this.successors = this.successors.filter(p => p.id !== peer.id)
    if (this.pred?.id === peer.id) this.pred = null
    let changed = false
    for (let i = 0; i < M; i++) {
      if (this.raw[i]?.id === peer.id) { this.raw[i] = undefined; changed = true }
    }
    if (changed) this.deriveFingers()
    if (this.successors.length === 0) {
      // all successors gone: fall back on any node still known rather than
      // declaring ourselves alone, which would split us off the ring
      const known = [...this.fingerCache, ...(this.pred === null ? [] : [this.pred])]
      this.successors = this.cleanSuccessors(known)
    }
  }

  async checkRingSplit (via: PeerInfo): Promise<boolean> {
    this.requireJoined()
    const viaPeer = this.verifier.verify(via)
    const res = await this.request(viaPeer.info, { type: 'find', key: idToHex(this.peer.id) }) as { node: unknown }
    const x = this.verifier.verify(res.node)
    if (x.id === this.peer.id) return false
    if (inOpen(x.id, this.peer.id, this.successor().id) || this.successor().id === this.peer.id) {
      this.successors = this.cleanSuccessors([x, ...this.successors])
    }
    await this.request(x.info, { type: 'notify', node: this.peer.info }).catch(this.onError)
    await this.stabilise()
    return true
  }

  // ------------------------------------------------------------ lookups

  /** known nodes in (self, key), closest to the key first */
  private closestPreceding (key: Id, count: number, avoid?: Set<Id>): Peer[] {
    const seen = new Set<Id>(avoid)
    const out: Peer[] = []
    for (const p of [...this.fingerCache, ...this.successors]) {
      if (seen.has(p.id) || !inOpen(p.id, this.peer.id, key)) continue
      seen.add(p.id)
      out.push(p)
    }
    out.sort((a, b) => cmp(ringDistance(a.id, key), ringDistance(b.id, key)))
    return out.slice(0, count)
  }

  async lookup (key: Id, opts: LookupOptions = {}): Promise<LookupResult> {
    this.requireJoined()
    const succ = this.successor()
    if (succ.id === this.peer.id) return { node: this.peer, hops: 0 }
    if (key === this.peer.id) return { node: this.peer, hops: 0 }
    if (inHalfOpen(key, this.peer.id, succ.id)) {
      if (!(opts.alive ?? false) || await this.answers(succ)) return { node: succ, hops: 0 }
      this.forget(succ)
      return await this.lookup(key, opts)
    }
    return await this.route(key, this.closestPreceding(key, M), opts.alive ?? false)
  }

  /**
   * Iterative routing from `start`. With `alive`, the answer is pinged and,
   * if dead, the node that named it is asked again with the dead one avoided.
   */
  private async route (key: Id, start: Peer[], alive: boolean): Promise<LookupResult> {
    // candidates ordered closest to the key first; a dead or hostile one is
    // skipped and the next best one is asked. Nodes found dead are named in
    // later steps, so a node whose successor just died can answer past it.
    let pool = [...start]
    const askedAt = new Map<Id, number>()
    const dead = new Set<Id>()
    let lastAnswerer: Peer | undefined
    let refusal: unknown
    let hops = 0
    for (let attempts = 0; attempts < 3 * this.maxHops; attempts++) {
      const c = pool.shift()
      if (c === undefined) {
        throw refusal ?? new LookupFailedError(`no node answered a lookup of ${idToHex(key).slice(0, 12)}…`)
      }
      askedAt.set(c.id, dead.size)
      let next: { done: true, node: Peer } | { done: false, candidates: Peer[] }
      try {
        next = await this.stepThrough(c, key, dead)
      } catch (err) {
        if (err instanceof NodeUnreachableError) {
          this.forget(c)
          dead.add(c.id)
          if (lastAnswerer !== undefined) pool = mergeByCloseness(key, pool, [lastAnswerer])
          continue
        }
        if (!(err instanceof HashtagError)) throw err
        refusal = err
        continue
      }
      hops++
      if (next.done) {
        if (!alive || next.node.id === this.peer.id || await this.answers(next.node)) return { node: next.node, hops }
        dead.add(next.node.id)
        this.forget(next.node)
        pool = mergeByCloseness(key, pool, [c])
        continue
      }
      if (hops >= this.maxHops) break
      lastAnswerer = c
      const fresh = next.candidates.filter(p => !dead.has(p.id) && (askedAt.get(p.id) ?? -1) < dead.size)
      pool = mergeByCloseness(key, pool, fresh)
    }
    throw new LookupLoopError(`lookup of ${idToHex(key).slice(0, 12)}… took more than ${this.maxHops} hops`)
  }

  private async answers (peer: Peer): Promise<boolean> {
    try {
      await this.request(peer.info, { type: 'ping' })
      return true
    } catch (err) {
      if (err instanceof NodeUnreachableError) return false
      throw err
    }
  }

  /** ask one node for the next step and validate what it says */
  private async stepThrough (c: Peer, key: Id, dead: Set<Id>): Promise<{ done: true, node: Peer } | { done: false, candidates: Peer[] }> {
    const avoid = [...dead].slice(-16).map(idToHex)
    const res = await this.request(c.info, { type: 'step', key: idToHex(key), avoid }) as { done?: unknown, nodes?: unknown }
    if (typeof res !== 'object' || res === null || !Array.isArray(res.nodes) || res.nodes.length === 0 || res.nodes.length > 64) {
      throw new MalformedMessageError('malformed lookup step answer')
    }
    if (res.done === true) {
      const node = this.verifier.verify(res.nodes[0])
      if (!inHalfOpen(key, c.id, node.id)) throw new LookupFailedError('a node named a successor that does not follow the key')
      return { done: true, node }
    }
    if (res.done !== false) throw new MalformedMessageError('malformed lookup step answer')
    return { done: false, candidates: this.progressing(c, key, res.nodes) }
  }

  /** verify the nodes a step named and keep only those strictly closer to the key */
  private progressing (from: Peer, key: Id, nodes: unknown[]): Peer[] {
    let forged = 0
    let backwards = 0
    const out: Peer[] = []
    for (const n of nodes) {
      let p: Peer
      try {
        p = this.verifier.verify(n)
      } catch (err) {
        if (err instanceof HashtagError) { forged++; continue }
        throw err
      }
      if (!inOpen(p.id, from.id, key)) { backwards++; continue }
      out.push(p)
    }
    if (out.length > 0) return out
    if (forged > 0) throw new ForgedNodeIdError('a lookup step named only nodes whose IDs do not match their address and domain')
    if (backwards > 0) throw new LookupLoopError('a lookup step pointed away from the key (a routing loop)')
    throw new LookupFailedError('a lookup step named no next node')
  }

  // ------------------------------------------------------------ leave

  async leave (): Promise<void> {
    if (!this.joined) { this.stop(); return }
    const succ = this.successor()
    if (succ.id !== this.peer.id) {
      await this.handOver(succ, () => true)
      const msg = { type: 'leaving', node: this.peer.info, predecessor: this.pred?.info ?? null, successors: this.successors.map(p => p.info) }
      if (this.pred !== null && this.pred.id !== this.peer.id) await this.request(this.pred.info, msg).catch(this.onError)
      await this.request(succ.info, msg).catch(this.onError)
    }
    this.joined = false
    this.stop()
  }

  // ------------------------------------------------------------ helpers

  private tryVerify (value: unknown): Peer | null {
    try {
      return this.verifier.verify(value)
    } catch (err) {
      if (err instanceof HashtagError) return null
      throw err
    }
  }

  private verifyAll (values: unknown[]): Peer[] {
    const out: Peer[] = []
    for (const v of values.slice(0, 64)) {
      const p = this.tryVerify(v)
      if (p !== null) out.push(p)
    }
    return out
  }

  adoptConvergedState (sorted: Peer[]): void {
    const n = sorted.length
    const idx = sorted.findIndex(p => p.id === this.peer.id)
    if (idx < 0) throw new MalformedMessageError('this node is not in the list')
    this.start()
    this.joined = true
    this.pred = n > 1 ? sorted[(idx - 1 + n) % n] as Peer : null
    this.successors = this.cleanSuccessors(Array.from({ length: Math.min(this.r, n - 1) }, (_, k) => sorted[(idx + 1 + k) % n] as Peer))
    this.raw.fill(undefined)
    let i = 0
    while (i < M && n > 1) {
      const f = successorIn(sorted, ringAdd(this.peer.id, 1n << BigInt(i)))
      do { this.raw[i++] = f } while (i < M && inHalfOpen(ringAdd(this.peer.id, 1n << BigInt(i)), this.peer.id, f.id))
    }
    this.deriveFingers()
  }
}

function mergeByCloseness (key: Id, a: Peer[], b: Peer[]): Peer[] {
  const seen = new Set<Id>()
  const out: Peer[] = []
  for (const p of [...b, ...a]) {
    if (!seen.has(p.id)) { seen.add(p.id); out.push(p) }
  }
  return out.sort((x, y) => cmp(ringDistance(x.id, key), ringDistance(y.id, key)))
}

function cmp (a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** first node at or after `key` in a list sorted by ID */
export function successorIn (sorted: Peer[], key: Id): Peer {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if ((sorted[mid] as Peer).id < key) lo = mid + 1
    else hi = mid
  }
  return sorted[lo % sorted.length] as Peer
}
