/**
 * Relay role (§5.5, §7.1): timestamped subscriptions with last-request-wins
 * sync across the redundancy set, publishing of post URIs only, forwarding to
 * subscribers and to the storage replicas, overload refusals with signed
 * tokens, hot spares for the next larger set, and shrinking after a cooldown
 * that doubles whenever shrinking fails.
 */
import {
  HashtagError, MalformedMessageError, NotResponsibleError, OverloadRefusal, WrongPartitionError
} from './errors.js'
import { idToHex, parseId, ringDistance, RING_SIZE, type Id } from './ids.js'
import {
  DEFAULT_REDUNDANCY, assertRedundancy, contentPart, partitions, partOf, replicaLocation, signOverloadToken,
  validatePostUri, validateTimestamp, verifyOverloadToken, type KeyDirectory, type Signer
} from './redundancy.js'
import type { ChordNode, RangeData } from './ring.js'
import type { Clock } from './clock.js'
import type { Message, Transport } from './transport.js'

export interface Subscription { ts: number, on: boolean }

interface RelayKey {
  tagKey: Id
  location: Id
  /** the R this relay believes in */
  redundancy: number
  /** subscriber inbox address -> last request (last request wins) */
  subs: Map<string, Subscription>
  /** replicas of the smaller set that asked this added replica to shrink */
  shrinkContacts: Set<number>
  cooldownMs: number
  shrinkAt: number
  storageRedundancy: number
  /** when R last changed here; the newest change wins when the set syncs */
  changedAt: number
}

export interface RelayInit {
  /** publishes per window this relay forwards before refusing with an overload token @default Infinity */
  capacityPerWindow?: number
  /** @default 60000 */
  windowMs?: number
  /** how old an overload token may be @default 600000 */
  tokenMaxAgeMs?: number
  /** first cooldown before a doubled set tries to shrink; doubles on every failure @default 600000 */
  cooldownMs?: number
  /** URIs remembered to drop duplicates @default 10000 */
  dedupeSize?: number
}

export interface RelayComponents {
  /** this instance's node on the relay ring */
  node: ChordNode
  /** this instance's node on the storage ring, to find storage replicas */
  storage: ChordNode
  transport: Transport
  clock: Clock
  signer: Signer
  keys: KeyDirectory
}

export interface RelayRole {
  /** subscriptions held for a key (active ones), for tests and operators */
  subscribers: (tagKey: Id) => string[]
  /** the R this relay holds for a key, or undefined */
  redundancy: (tagKey: Id) => number | undefined
  overloaded: () => boolean
  /** periodic: sync subscriber lists with the set and its hot spares; try to shrink */
  tick: () => Promise<void>
}

const SUB_ADDRESS = /^[\x21-\x7e]{1,512}$/

export function mergeSubscription (subs: Map<string, Subscription>, who: string, s: Subscription): boolean {
  const cur = subs.get(who)
  // last request wins; on a tie, unsubscribing wins (the safer way to err)
  if (cur !== undefined && (cur.ts > s.ts || (cur.ts === s.ts && (!cur.on || s.on)))) return false
  subs.set(who, s)
  return true
}

export function createRelayRole (init: RelayInit, components: RelayComponents): RelayRole {
  const { node, storage, transport, clock, signer, keys } = components
  const capacity = init.capacityPerWindow ?? Number.POSITIVE_INFINITY
  const windowMs = init.windowMs ?? 60_000
  const tokenMaxAge = init.tokenMaxAgeMs ?? 600_000
  const baseCooldown = init.cooldownMs ?? 600_000
  const dedupeSize = init.dedupeSize ?? 10_000
  const state = new Map<Id, RelayKey>()
  const seen = new Set<string>()
  let windowStart = clock.now()
  let inWindow = 0

  const overloaded = (): boolean => {
    if (clock.now() - windowStart >= windowMs) { windowStart = clock.now(); inWindow = 0 }
    return inWindow >= capacity
  }

  const ensure = (tagKey: Id, location: Id): RelayKey => {
    let k = state.get(location)
    if (k === undefined) {
      k = {
        tagKey, location, redundancy: DEFAULT_REDUNDANCY, subs: new Map(), shrinkContacts: new Set(),
        cooldownMs: baseCooldown, shrinkAt: clock.now() + baseCooldown, storageRedundancy: DEFAULT_REDUNDANCY, changedAt: 0
      }
      state.set(location, k)
    }
    return k
  }

  const replicaIndex = (k: RelayKey, r: number): number => Number(ringDistance(k.tagKey, k.location) / (RING_SIZE / BigInt(r)))

  const target = (msg: Message): { tagKey: Id, replica: number, redundancy: number, location: Id } => {
    const tagKey = parseId(msg.tagKey)
    const redundancy = assertRedundancy(msg.redundancy ?? DEFAULT_REDUNDANCY)
    if (typeof msg.replica !== 'number') throw new MalformedMessageError('replica must be a number')
    const location = replicaLocation(tagKey, msg.replica, redundancy)
    if (!node.owns(location)) throw new NotResponsibleError('this relay is not responsible for that replica')
    return { tagKey, replica: msg.replica, redundancy, location }
  }

  const parseSubs = (value: unknown): Array<[string, Subscription]> => {
    if (!Array.isArray(value) || value.length > 100_000) throw new MalformedMessageError('subs must be a list')
    return value.map((v: unknown) => {
      if (!Array.isArray(v) || typeof v[0] !== 'string' || !SUB_ADDRESS.test(v[0]) || typeof v[1] !== 'number' || typeof v[2] !== 'boolean') {
        throw new MalformedMessageError('a subscription is [address, ts, on]')
      }
      return [v[0], { ts: v[1], on: v[2] }]
    })
  }

  const subsToWire = (k: RelayKey): unknown[] => [...k.subs].map(([who, s]) => [who, s.ts, s.on])

  node.attachData({
    select: pick => [...state.values()].filter(k => pick(k.location)).map(k => ({
      tagKey: idToHex(k.tagKey), location: idToHex(k.location), redundancy: k.redundancy, subs: subsToWire(k)
    })),
    remove: records => { for (const r of records) state.delete(parseId((r as { location: string }).location)) },
    accept: records => {
      for (const r of records) {
        const rec = r as Record<string, unknown>
        const k = ensure(parseId(rec.tagKey), parseId(rec.location))
        k.redundancy = Math.max(k.redundancy, assertRedundancy(rec.redundancy))
        for (const [who, s] of parseSubs(rec.subs)) mergeSubscription(k.subs, who, s)
      }
    }
  } satisfies RangeData)

  node.handle('relay.subscribe', async (msg) => {
    const t = target(msg)
    if (typeof msg.subscriber !== 'string' || !SUB_ADDRESS.test(msg.subscriber)) throw new MalformedMessageError('subscriber must be an inbox address')
    if (typeof msg.on !== 'boolean') throw new MalformedMessageError('on must be true or false')
    const ts = validateTimestamp(msg.ts, clock.now())
    const k = ensure(t.tagKey, t.location)
    mergeSubscription(k.subs, msg.subscriber, { ts, on: msg.on })
    return { redundancy: k.redundancy }
  })

  /** R changes spread through the set's sync: the newest change wins */
  const adoptRedundancy = (k: RelayKey, r: unknown, at: unknown): void => {
    if (typeof at !== 'number' || at <= k.changedAt || at > clock.now() + 60_000) return
    const redundancy = assertRedundancy(r)
    if (redundancy !== k.redundancy) {
      k.redundancy = redundancy
      k.cooldownMs = baseCooldown
      k.shrinkAt = clock.now() + baseCooldown
      k.shrinkContacts.clear()
    }
    k.changedAt = at
  }

  node.handle('relay.sync', async (msg) => {
    const t = target(msg)
    const k = ensure(t.tagKey, t.location)
    for (const [who, s] of parseSubs(msg.subs)) mergeSubscription(k.subs, who, s)
    adoptRedundancy(k, msg.current, msg.changedAt)
    return { subs: subsToWire(k), redundancy: k.redundancy, changedAt: k.changedAt }
  })

  node.handle('relay.publish', async (msg) => {
    const t = target(msg)
    const uri = validatePostUri(msg.uri)
    const ts = validateTimestamp(msg.ts, clock.now())
    const k = ensure(t.tagKey, t.location)
    if (t.redundancy > k.redundancy) {
      // we are a hot spare: only a real overload, attested by an active relay, activates us
      const token = verifyOverloadToken(msg.token, keys, t.tagKey, clock.now(), tokenMaxAge)
      if (token.redundancy * 2 < t.redundancy) throw new NotResponsibleError('redundancy may only double per step')
      k.redundancy = t.redundancy
      k.cooldownMs = baseCooldown
      k.shrinkAt = clock.now() + baseCooldown
      k.changedAt = clock.now()
    }
    if (replicaIndex(k, k.redundancy) >= k.redundancy || ringDistance(k.tagKey, k.location) % (RING_SIZE / BigInt(k.redundancy)) !== 0n) {
      throw new NotResponsibleError('this relay is not in the active redundancy set')
    }
    if (overloaded()) {
      const token = signOverloadToken(signer, node.peer.id, t.tagKey, k.redundancy, clock.now())
      throw new OverloadRefusal('relay is overloaded; try the next relay of the set', token, k.redundancy)
    }
    inWindow++
    if (seen.has(uri)) return { redundancy: k.redundancy, duplicate: true }
    seen.add(uri)
    if (seen.size > dedupeSize) seen.delete(seen.values().next().value as string)
    const delivered = await deliver(k, uri)
    await forwardToStorage(k, uri, ts)
    return { redundancy: k.redundancy, delivered }
  })

  node.handle('relay.shrink', async (msg) => {
    const t = target(msg)
    const k = ensure(t.tagKey, t.location)
    if (typeof msg.from !== 'number') throw new MalformedMessageError('from must be a replica number')
    for (const [who, s] of parseSubs(msg.subs)) mergeSubscription(k.subs, who, s)
    // already shrunk by the others of the smaller set
    if (k.redundancy < t.redundancy) return { status: 'shrunk', redundancy: k.redundancy }
    if (overloaded()) return { status: 'overloaded', redundancy: k.redundancy }
    k.shrinkContacts.add(msg.from)
    if (k.shrinkContacts.size >= t.redundancy / 2) {
      k.redundancy = k.redundancy / 2
      k.changedAt = clock.now()
      k.shrinkContacts.clear()
      return { status: 'shrunk', redundancy: k.redundancy }
    }
    return { status: 'pending', redundancy: k.redundancy }
  })

  const deliver = async (k: RelayKey, uri: string): Promise<number> => {
    let n = 0
    for (const [who, s] of k.subs) {
      if (!s.on) continue
      try {
        await transport.request(node.address, who, { type: 'hashtags.deliver', tagKey: idToHex(k.tagKey), uris: [uri] })
        n++
      } catch (err) {
        if (!(err instanceof HashtagError)) throw err
      }
    }
    return n
  }

  /** send to every storage replica of the post's content part; follow R if it grew */
  const forwardToStorage = async (k: RelayKey, uri: string, ts: number): Promise<void> => {
    const done = new Set<number>()
    for (let round = 0; round < 4; round++) {
      const r = k.storageRedundancy
      const part = contentPart(uri, partitions(r))
      let grew = false
      for (let i = 0; i < r; i++) {
        if (partOf(i, r) !== part || done.has(i * (256 / r))) continue
        try {
          const owner = (await storage.lookup(replicaLocation(k.tagKey, i, r), { alive: true })).node
          const res = await storage.call(owner.info, { type: 'storage.store', tagKey: idToHex(k.tagKey), replica: i, redundancy: r, post: { uri, ts } }) as { redundancy: number }
          done.add(i * (256 / r))
          if (res.redundancy > k.storageRedundancy) { k.storageRedundancy = assertRedundancy(res.redundancy); grew = true }
        } catch (err) {
          if (err instanceof WrongPartitionError) { grew = true; continue }
          if (!(err instanceof HashtagError)) throw err
        }
      }
      if (!grew) return
    }
  }

  const syncKey = async (k: RelayKey): Promise<void> => {
    // the active set and the hot spares of the next larger set
    const r2 = Math.min(256, k.redundancy * 2)
    for (let i = 0; i < r2; i++) {
      const loc = replicaLocation(k.tagKey, i, r2)
      if (loc === k.location) continue
      const owner = (await node.lookup(loc, { alive: true })).node
      if (owner.id === node.peer.id) continue
      const res = await node.call(owner.info, {
        type: 'relay.sync', tagKey: idToHex(k.tagKey), replica: i, redundancy: r2, subs: subsToWire(k), current: k.redundancy, changedAt: k.changedAt
      }) as { subs: unknown, redundancy: unknown, changedAt: unknown }
      for (const [who, s] of parseSubs(res.subs)) mergeSubscription(k.subs, who, s)
      // an activated hot spare (or a finished shrink) tells the rest of the set
      adoptRedundancy(k, res.redundancy, res.changedAt)
    }
  }

  const tryShrink = async (k: RelayKey): Promise<void> => {
    const r = k.redundancy
    const mine = replicaIndex(k, r)
    // the smaller set is the even-numbered points; the odd ones were added by doubling
    if (r <= DEFAULT_REDUNDANCY || mine % 2 === 1 || clock.now() < k.shrinkAt) return
    let failed = overloaded()
    let allShrunk = !failed
    for (let i = 1; i < r && !failed; i += 2) {
      const owner = (await node.lookup(replicaLocation(k.tagKey, i, r), { alive: true })).node
      const res = await node.call(owner.info, { type: 'relay.shrink', tagKey: idToHex(k.tagKey), replica: i, redundancy: r, from: mine, subs: subsToWire(k) }) as { status: string }
      if (res.status === 'overloaded') failed = true
      if (res.status !== 'shrunk') allShrunk = false
    }
    if (failed) {
      k.cooldownMs *= 2
      k.shrinkAt = clock.now() + k.cooldownMs
    } else if (allShrunk) {
      k.redundancy = r / 2
      k.changedAt = clock.now()
      k.cooldownMs = baseCooldown
      k.shrinkAt = clock.now() + baseCooldown
    }
  }

  return {
    subscribers: tagKey => [...state.values()].filter(k => k.tagKey === tagKey)
      .flatMap(k => [...k.subs].filter(([, s]) => s.on).map(([who]) => who))
      .filter((v, i, a) => a.indexOf(v) === i).sort(),
    redundancy: tagKey => [...state.values()].find(k => k.tagKey === tagKey)?.redundancy,
    overloaded,
    async tick () {
      for (const k of [...state.values()]) {
        try {
          await syncKey(k)
          await tryShrink(k)
        } catch (err) {
          if (!(err instanceof HashtagError)) throw err
        }
      }
    }
  }
}
