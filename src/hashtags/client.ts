/**
 * The instance side: what a federated instance does with the two rings.
 * Subscribe/unsubscribe to the whole redundancy set, publish to log2(R)
 * random relays (doubling R with overload tokens when too few accept),
 * query storage page by page, cross-check replicas by Merkle root, and an
 * inbox that drops duplicates and fetches announced URIs in batches with
 * randomised exponential backoff.
 */
import { HashtagError, LookupFailedError, OverloadRefusal } from './errors.js'
import { idToHex, tagKey as keyOf, type Id } from './ids.js'
import { majorityRoot, type Verdict } from './merkle.js'
import {
  DEFAULT_REDUNDANCY, MAX_REDUNDANCY, assertRedundancy, partitions, partOf, replicaLocation, validatePostUri
} from './redundancy.js'
import { pageOf, type StoredPost } from './storage.js'
import type { ChordNode } from './ring.js'
import type { Clock } from './clock.js'
import type { Random } from './random.js'
import type { Listener, Transport } from './transport.js'
import type { Peer } from './peer.js'

export interface HashtagClientInit {
  /** where this instance receives `hashtags.deliver` */
  inbox: string
}

export interface HashtagClientComponents {
  relay: ChordNode
  storage: ChordNode
  clock: Clock
  random: Random
}

export interface PublishResult {
  redundancy: number
  /** relays that accepted */
  accepted: number
}

export interface QueryPage { posts: StoredPost[], cursor?: string }

export interface HashtagClient {
  subscribe: (tag: string) => Promise<number>
  unsubscribe: (tag: string) => Promise<number>
  publish: (tag: string, uri: string, ts?: number) => Promise<PublishResult>
  query: (tag: string, opts?: { limit?: number, cursor?: string }) => Promise<QueryPage>
  /** roots of every storage replica and the majority verdict (§8.4) */
  crossCheck: (tag: string) => Promise<Verdict<string>>
  /** the R this client currently uses for a tag's relays */
  relayRedundancy: (tag: string) => number
}

export function createHashtagClient (init: HashtagClientInit, components: HashtagClientComponents): HashtagClient {
  const { relay, storage, clock, random } = components
  const relayR = new Map<Id, number>()
  const storageR = new Map<Id, number>()
  const rOf = (m: Map<Id, number>, k: Id): number => m.get(k) ?? DEFAULT_REDUNDANCY

  const ownerOf = async (ring: ChordNode, key: Id, replica: number, r: number): Promise<Peer> =>
    (await ring.lookup(replicaLocation(key, replica, r), { alive: true })).node

  const setSubscription = async (tag: string, on: boolean): Promise<number> => {
    const key = keyOf(tag)
    const r = rOf(relayR, key)
    const ts = clock.now()
    let ok = 0
    // all R relays of the set and the hot spares (they keep lists for a flash crowd)
    for (let i = 0; i < r; i++) {
      try {
        const owner = await ownerOf(relay, key, i, r)
        await relay.call(owner.info, { type: 'relay.subscribe', tagKey: idToHex(key), replica: i, redundancy: r, subscriber: init.inbox, ts, on })
        ok++
      } catch (err) {
        if (!(err instanceof HashtagError)) throw err
      }
    }
    if (ok === 0) throw new LookupFailedError('no relay of the set accepted the subscription')
    return ok
  }

  const tryPublish = async (key: Id, replica: number, r: number, uri: string, ts: number, token?: unknown): Promise<number | OverloadRefusal | undefined> => {
    try {
      const owner = await ownerOf(relay, key, replica, r)
      const res = await relay.call(owner.info, { type: 'relay.publish', tagKey: idToHex(key), replica, redundancy: r, uri, ts, token }) as { redundancy: number }
      return assertRedundancy(res.redundancy)
    } catch (err) {
      if (err instanceof OverloadRefusal) return err
      if (err instanceof HashtagError) return undefined
      throw err
    }
  }

  const publish = async (tag: string, uri: string, ts = clock.now()): Promise<PublishResult> => {
    validatePostUri(uri)
    const key = keyOf(tag)
    let r = rOf(relayR, key)
    let tokens: unknown[] = []
    for (;;) {
      const need = Math.max(1, Math.log2(r))
      const order = random.shuffle(Array.from({ length: r }, (_, i) => i))
      let accepted = 0
      for (const i of order) {
        if (accepted >= need) break
        const out = await tryPublish(key, i, r, uri, ts, tokens[0])
        if (typeof out === 'number') { accepted++; if (out > r) relayR.set(key, out) }
        else if (out instanceof OverloadRefusal) tokens.push(out.token)
      }
      if (accepted >= need || tokens.length === 0 || r >= MAX_REDUNDANCY) {
        return { redundancy: relayR.get(key) ?? r, accepted }
      }
      // too few relays could take it and they proved an overload: use the hot spares
      r *= 2
      relayR.set(key, r)
      const spareTokens = tokens
      tokens = []
      let spareAccepted = accepted
      // the hot spares are the new, odd-numbered points of the doubled set
      for (let i = 1; i < r && spareAccepted < Math.log2(r); i += 2) {
        const out = await tryPublish(key, i, r, uri, ts, spareTokens[0])
        if (typeof out === 'number') spareAccepted++
        else if (out instanceof OverloadRefusal) tokens.push(out.token)
      }
      if (spareAccepted >= Math.max(1, Math.log2(r) - 1) || tokens.length === 0) return { redundancy: r, accepted: spareAccepted }
    }
  }

  const query = async (tag: string, opts: { limit?: number, cursor?: string } = {}): Promise<QueryPage> => {
    const key = keyOf(tag)
    const r = rOf(storageR, key)
    const limit = opts.limit ?? 50
    const merged = new Map<string, StoredPost>()
    // one live replica per content part; parts are merged newest first
    for (let part = 0; part < partitions(r); part++) {
      let answered = false
      for (let i = 0; i < r && !answered; i++) {
        if (partOf(i, r) !== part) continue
        try {
          const owner = await ownerOf(storage, key, i, r)
          const res = await storage.call(owner.info, { type: 'storage.query', tagKey: idToHex(key), replica: i, redundancy: r, limit, cursor: opts.cursor }) as QueryPage & { redundancy: number }
          for (const p of res.posts) merged.set(p.uri, p)
          if (res.redundancy > r) storageR.set(key, res.redundancy)
          answered = true
        } catch (err) {
          if (!(err instanceof HashtagError)) throw err
        }
      }
      if (!answered) throw new LookupFailedError(`no storage replica of part ${part + 1} answered`)
    }
    const all = [...merged.values()].sort((a, b) => b.ts - a.ts || (a.uri < b.uri ? -1 : 1))
    const page = pageOf(all, limit)
    const last = page.posts[page.posts.length - 1]
    // more may exist beyond this page if any part filled its page
    return all.length >= limit && last !== undefined ? { posts: page.posts, cursor: pageCursor(last) } : { posts: page.posts }
  }

  return {
    subscribe: async tag => await setSubscription(tag, true),
    unsubscribe: async tag => await setSubscription(tag, false),
    publish,
    query,
    async crossCheck (tag) {
      const key = keyOf(tag)
      const r = rOf(storageR, key)
      const reports: Array<{ who: string, root: string }> = []
      for (let i = 0; i < r; i++) {
        try {
          const owner = await ownerOf(storage, key, i, r)
          const res = await storage.call(owner.info, { type: 'storage.root', tagKey: idToHex(key), replica: i, redundancy: r }) as { root: string }
          reports.push({ who: owner.info.id, root: res.root })
        } catch (err) {
          if (!(err instanceof HashtagError)) throw err
        }
      }
      return majorityRoot(reports)
    },
    relayRedundancy: tag => rOf(relayR, keyOf(tag))
  }
}

function pageCursor (p: StoredPost): string {
  return Buffer.from(JSON.stringify([p.ts, p.uri]), 'utf8').toString('base64url')
}

// ------------------------------------------------------------ inbox

export interface InboxInit {
  address: string
  ip: string
  /** announced URIs are gathered for a random time up to this before one batch fetch (§5.5) @default 2000 */
  batchWindowMs?: number
  /** first retry delay; each retry doubles it, with full jitter @default 1000 */
  backoffBaseMs?: number
  /** @default 6 */
  maxAttempts?: number
  /** URIs remembered to drop duplicates @default 100000 */
  dedupeSize?: number
}

export interface InboxComponents {
  transport: Transport
  clock: Clock
  random: Random
  /** fetch posts from their origin; returns the URIs that failed */
  fetchPosts: (uris: string[]) => Promise<string[]>
}

export interface Inbox {
  close: () => void
  /** URIs fetched successfully, in order */
  readonly fetched: string[]
  /** URIs given up on after maxAttempts */
  readonly abandoned: string[]
  /** duplicates dropped */
  duplicates: () => number
}

export function createInbox (init: InboxInit, components: InboxComponents): Inbox {
  const { transport, clock, random, fetchPosts } = components
  const window = init.batchWindowMs ?? 2000
  const base = init.backoffBaseMs ?? 1000
  const maxAttempts = init.maxAttempts ?? 6
  const dedupeSize = init.dedupeSize ?? 100_000
  const seen = new Set<string>()
  const fetched: string[] = []
  const abandoned: string[] = []
  let dupes = 0
  let batch: string[] = []
  let batchTimer = false

  const fetchBatch = async (uris: string[], attempt: number): Promise<void> => {
    const failed = await fetchPosts(uris).catch(() => uris)
    const failedSet = new Set(failed)
    for (const u of uris) if (!failedSet.has(u)) fetched.push(u)
    if (failed.length === 0) return
    if (attempt + 1 >= maxAttempts) { abandoned.push(...failed); return }
    // randomised exponential backoff ("full jitter"): uniform in [0, base·2^attempt]
    const delay = random.next() * base * 2 ** (attempt + 1)
    clock.setTimer(() => { fetchBatch(failed, attempt + 1).catch(() => {}) }, delay)
  }

  const listener: Listener = transport.listen(init.address, init.ip, async (msg) => {
    if (msg.type !== 'hashtags.deliver' || !Array.isArray(msg.uris) || msg.uris.length > 1000) {
      throw new HashtagError('malformed-message', 'expected hashtags.deliver with a list of URIs')
    }
    for (const u of msg.uris) {
      const uri = validatePostUri(u)
      if (seen.has(uri)) { dupes++; continue }
      seen.add(uri)
      if (seen.size > dedupeSize) seen.delete(seen.values().next().value as string)
      batch.push(uri)
    }
    if (!batchTimer && batch.length > 0) {
      batchTimer = true
      clock.setTimer(() => {
        const uris = batch
        batch = []
        batchTimer = false
        fetchBatch(uris, 0).catch(() => {})
      }, random.next() * window)
    }
    return { ok: true }
  })

  return { close: () => { listener.close() }, fetched, abandoned, duplicates: () => dupes }
}
