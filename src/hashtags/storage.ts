/**
 * Storage role (§5.7, §7.2): post URIs with timestamps per hashtag replica,
 * stepwise time-descending queries with a cursor, a year kept, deletion only
 * when space is needed (expired posts oldest first, then round-robin across
 * the hashtags holding more than their fair share), content partitions under
 * overload, and a Merkle root per history for cross-checking replicas.
 */
import {
  HashtagError, InvalidCursorError, MalformedMessageError, NotResponsibleError, WrongPartitionError
} from './errors.js'
import { idToHex, parseId, ringDistance, RING_SIZE, type Id } from './ids.js'
import { merkleRoot, type HistoryEntry } from './merkle.js'
import {
  DEFAULT_REDUNDANCY, assertRedundancy, contentPart, partOf, partitions, replicaLocation,
  validatePostUri, validateTimestamp
} from './redundancy.js'
import type { ChordNode, RangeData } from './ring.js'
import type { Clock } from './clock.js'
import type { Message } from './transport.js'

export const YEAR_MS = 365 * 24 * 3600 * 1000

export interface StoredPost { uri: string, ts: number }

/** One replica of one hashtag's history on this node. */
interface History {
  tagKey: Id
  location: Id
  redundancy: number
  /** newest first; ties by URI */
  posts: StoredPost[]
  uris: Set<string>
  root: string | undefined
  /** stores in the current overload window */
  recent: number
}

export interface HistoryStoreInit {
  /** bytes available for post URIs @default 1 GiB */
  capacityBytes?: number
  /** accounted size of one stored URI (§3.3, §8.2) @default 1024 */
  postBytes?: number
  /** posts younger than this go only when space runs out @default one year */
  retentionMs?: number
}

export interface Page { posts: StoredPost[], cursor?: string }

const newestFirst = (a: StoredPost, b: StoredPost): number => b.ts - a.ts || (a.uri < b.uri ? -1 : a.uri > b.uri ? 1 : 0)

/** cursor = the last post returned; the next page starts strictly after it */
export function encodeCursor (p: StoredPost): string {
  return Buffer.from(JSON.stringify([p.ts, p.uri]), 'utf8').toString('base64url')
}

export function decodeCursor (cursor: unknown): StoredPost {
  if (typeof cursor !== 'string' || cursor.length > 2048) throw new InvalidCursorError('cursor must be a short string')
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown
    if (Array.isArray(v) && typeof v[0] === 'number' && typeof v[1] === 'string') return { ts: v[0], uri: v[1] }
  } catch {}
  throw new InvalidCursorError('cursor is not one this node issued')
}

/** the page of `posts` (newest first) after `cursor` */
export function pageOf (posts: readonly StoredPost[], limit: number, cursor?: string): Page {
  let start = 0
  if (cursor !== undefined) {
    const after = decodeCursor(cursor)
    let lo = 0
    let hi = posts.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (newestFirst(posts[mid] as StoredPost, after) <= 0) lo = mid + 1
      else hi = mid
    }
    start = lo
  }
  const page = posts.slice(start, start + limit)
  const last = page[page.length - 1]
  return start + limit < posts.length && last !== undefined ? { posts: page, cursor: encodeCursor(last) } : { posts: page }
}

/**
 * The data structure alone, without the network, so the deletion policy
 * can be tested and reasoned about by itself.
 */
export class HistoryStore {
  readonly capacityBytes: number
  readonly postBytes: number
  readonly retentionMs: number
  private readonly histories = new Map<Id, History>()
  private count = 0
  /** round-robin position: the location that lost a post last */
  private rr: Id = 0n

  constructor (init: HistoryStoreInit = {}) {
    this.capacityBytes = init.capacityBytes ?? 1024 ** 3
    this.postBytes = init.postBytes ?? 1024
    this.retentionMs = init.retentionMs ?? YEAR_MS
  }

  usedBytes (): number { return this.count * this.postBytes }
  postCount (): number { return this.count }

  history (location: Id): History | undefined { return this.histories.get(location) }

  locations (): Id[] { return [...this.histories.keys()] }

  ensure (tagKey: Id, location: Id, redundancy: number): History {
    let h = this.histories.get(location)
    if (h === undefined) {
      h = { tagKey, location, redundancy, posts: [], uris: new Set(), root: undefined, recent: 0 }
      this.histories.set(location, h)
    }
    if (h.tagKey !== tagKey) throw new MalformedMessageError('two hashtags claim one ring location')
    return h
  }

  /** add one post; false if it was already there. Frees space first if needed. */
  add (h: History, post: StoredPost, now: number): boolean {
    if (h.uris.has(post.uri)) return false
    if (this.postBytes > this.capacityBytes) return false
    while (this.usedBytes() + this.postBytes > this.capacityBytes) this.evictOne(now)
    let lo = 0
    let hi = h.posts.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (newestFirst(h.posts[mid] as StoredPost, post) < 0) lo = mid + 1
      else hi = mid
    }
    h.posts.splice(lo, 0, post)
    h.uris.add(post.uri)
    h.root = undefined
    this.count++
    return true
  }

  /**
   * Free one post's space. Expired posts (older than the retention) go first,
   * oldest first. Otherwise the oldest post of the next hashtag, in
   * round-robin order, among those holding more than their fair share
   * (capacity / number of hashtags): a flood on one key then only eats into
   * its own history, never into a rare tag's.
   */
  evictOne (now: number): void {
    const oldest = this.oldestExpired(now)
    if (oldest !== undefined) { this.removeOldest(oldest); return }
    const fair = this.capacityBytes / this.postBytes / Math.max(1, this.histories.size)
    const over = [...this.histories.values()].filter(h => h.posts.length > fair)
    const pool = over.length > 0 ? over : [...this.histories.values()].filter(h => h.posts.length > 0)
    if (pool.length === 0) throw new HashtagError('internal', 'nothing left to delete')
    pool.sort((a, b) => (ringDistance(this.rr, a.location) < ringDistance(this.rr, b.location) ? -1 : 1))
    const next = pool.find(h => h.location !== this.rr) ?? pool[0] as History
    this.rr = next.location
    this.removeOldest(next)
  }

  private oldestExpired (now: number): History | undefined {
    let best: History | undefined
    for (const h of this.histories.values()) {
      const last = h.posts[h.posts.length - 1]
      if (last !== undefined && now - last.ts > this.retentionMs && (best === undefined || last.ts < (best.posts[best.posts.length - 1] as StoredPost).ts)) best = h
    }
    return best
  }

  private removeOldest (h: History): void {
    const p = h.posts.pop()
    if (p === undefined) return
    h.uris.delete(p.uri)
    h.root = undefined
    this.count--
    if (h.posts.length === 0) this.histories.delete(h.location)
  }

  root (h: History | undefined): string {
    if (h === undefined) return merkleRoot([])
    h.root ??= merkleRoot(h.posts as HistoryEntry[])
    return h.root
  }

  /** bytes per location, for k-choices load statistics (§6.2) */
  loadByLocation (): Array<{ location: Id, bytes: number }> {
    return [...this.histories.values()].map(h => ({ location: h.location, bytes: h.posts.length * this.postBytes }))
  }

  // RangeData: whole histories move when responsibility moves
  select (pick: (location: Id) => boolean): unknown[] {
    return [...this.histories.values()].filter(h => pick(h.location)).map(h => ({
      tagKey: idToHex(h.tagKey), location: idToHex(h.location), redundancy: h.redundancy, posts: h.posts
    }))
  }

  remove (records: unknown[]): void {
    for (const r of records) {
      const h = this.histories.get(parseId((r as { location: string }).location))
      if (h === undefined) continue
      this.count -= h.posts.length
      this.histories.delete(h.location)
    }
  }

  accept (records: unknown[], now: number): void {
    for (const r of records) {
      const rec = r as Record<string, unknown>
      const h = this.ensure(parseId(rec.tagKey), parseId(rec.location), assertRedundancy(rec.redundancy))
      if (!Array.isArray(rec.posts)) throw new MalformedMessageError('records need posts')
      for (const p of rec.posts as unknown[]) this.add(h, parsePost(p, now), now)
    }
  }
}

export function parsePost (value: unknown, now: number): StoredPost {
  const p = value as Record<string, unknown> | null
  if (typeof p !== 'object' || p === null) throw new MalformedMessageError('a post must be {uri, ts}')
  return { uri: validatePostUri(p.uri), ts: validateTimestamp(p.ts, now) }
}

// ------------------------------------------------------------ the networked role

export interface StorageInit extends HistoryStoreInit {
  /** largest page a query returns @default 100 */
  maxPageSize?: number
  /** stores per key per window above which this node doubles R (§7.2) @default Infinity */
  overloadStoresPerWindow?: number
  /** @default 60000 */
  overloadWindowMs?: number
}

export interface StorageComponents {
  node: ChordNode
  clock: Clock
}

export interface StoreResult { redundancy: number, partitions: number, part: number, stored: boolean }

export interface StorageRole {
  readonly store: HistoryStore
  /** anti-entropy: exchange histories with the other replicas of every key held (§7) */
  syncReplicas: () => Promise<void>
  /** after the cooldown: pull the added (odd) replicas' posts into this replica of the smaller set and halve R */
  shrink: (tagKey: Id) => Promise<void>
  /** called by the load balancer or an operator to set R for a key held here */
  setRedundancy: (tagKey: Id, redundancy: number) => void
}

export function createStorageRole (init: StorageInit, components: StorageComponents): StorageRole {
  const { node, clock } = components
  const store = new HistoryStore(init)
  const maxPage = init.maxPageSize ?? 100
  const overloadAt = init.overloadStoresPerWindow ?? Number.POSITIVE_INFINITY
  const windowMs = init.overloadWindowMs ?? 60_000
  let windowStart = clock.now()

  const data: RangeData = {
    select: pick => store.select(pick),
    remove: records => { store.remove(records) },
    accept: records => { store.accept(records, clock.now()) }
  }
  node.attachData(data)

  /** resolve and check the replica a message addresses */
  const target = (msg: Message): { tagKey: Id, replica: number, redundancy: number, location: Id } => {
    const tagKey = parseId(msg.tagKey)
    const redundancy = assertRedundancy(msg.redundancy ?? DEFAULT_REDUNDANCY)
    const replica = msg.replica
    if (typeof replica !== 'number') throw new MalformedMessageError('replica must be a number')
    const location = replicaLocation(tagKey, replica, redundancy)
    if (!node.owns(location)) throw new NotResponsibleError('this node is not responsible for that replica')
    return { tagKey, replica, redundancy, location }
  }

  const tickWindow = (): void => {
    if (clock.now() - windowStart < windowMs) return
    windowStart = clock.now()
    for (const loc of store.locations()) { const h = store.history(loc); if (h !== undefined) h.recent = 0 }
  }

  node.handle('storage.store', async (msg) => {
    const t = target(msg)
    const now = clock.now()
    const post = parsePost(msg.post, now)
    tickWindow()
    const h = store.ensure(t.tagKey, t.location, t.redundancy)
    // a newer R from the sender (or our own overload) wins; R never shrinks here
    if (t.redundancy > h.redundancy) h.redundancy = t.redundancy
    if (++h.recent > overloadAt && h.redundancy < 256) { h.redundancy *= 2; h.recent = 0 }
    const parts = partitions(h.redundancy)
    const replica = Number(ringDistance(t.tagKey, t.location) / (RING_SIZE / BigInt(h.redundancy)))
    const part = partOf(replica, h.redundancy)
    if (contentPart(post.uri, parts) !== part) {
      throw new WrongPartitionError(`post belongs to part ${contentPart(post.uri, parts) + 1} of ${parts}; this replica holds part ${part + 1}`)
    }
    const stored = store.add(h, post, now)
    return { redundancy: h.redundancy, partitions: parts, part: part + 1, stored }
  })

  node.handle('storage.query', async (msg) => {
    const t = target(msg)
    const limit = typeof msg.limit === 'number' && Number.isInteger(msg.limit) && msg.limit > 0 ? Math.min(msg.limit, maxPage) : maxPage
    const h = store.history(t.location)
    const page = pageOf(h?.posts ?? [], limit, msg.cursor === undefined || msg.cursor === null ? undefined : msg.cursor as string)
    return { ...page, redundancy: h?.redundancy ?? t.redundancy }
  })

  node.handle('storage.root', async (msg) => {
    const t = target(msg)
    const h = store.history(t.location)
    return { root: store.root(h), count: h?.posts.length ?? 0 }
  })

  node.handle('storage.merge', async (msg) => {
    const t = target(msg)
    if (!Array.isArray(msg.posts)) throw new MalformedMessageError('merge needs posts')
    const now = clock.now()
    const h = store.ensure(t.tagKey, t.location, t.redundancy)
    for (const p of msg.posts as unknown[]) store.add(h, parsePost(p, now), now)
    return { posts: h.posts }
  })

  const syncOne = async (location: Id): Promise<void> => {
    const h = store.history(location)
    if (h === undefined) return
    const step = RING_SIZE / BigInt(h.redundancy)
    const mine = partOf(Number(ringDistance(h.tagKey, location) / step), h.redundancy)
    const locations = Array.from({ length: h.redundancy }, (_, i) => replicaLocation(h.tagKey, i, h.redundancy))
    for (const [i, loc] of locations.entries()) {
      // only replicas of the same content part hold the same posts
      if (loc === location || partOf(i, h.redundancy) !== mine) continue
      const owner = (await node.lookup(loc, { alive: true })).node
      if (owner.id === node.peer.id) {
        // two replicas on one node: each acts as its own replica (§7)
        const twin = store.ensure(h.tagKey, loc, h.redundancy)
        const now = clock.now()
        for (const p of h.posts) store.add(twin, p, now)
        continue
      }
      const base = { tagKey: idToHex(h.tagKey), replica: i, redundancy: h.redundancy }
      const theirs = await node.call(owner.info, { type: 'storage.root', ...base }) as { root: string }
      if (theirs.root === store.root(h)) continue
      const res = await node.call(owner.info, { type: 'storage.merge', ...base, posts: h.posts }) as { posts: unknown[] }
      const now = clock.now()
      for (const p of res.posts) store.add(h, parsePost(p, now), now)
    }
  }

  return {
    store,
    async syncReplicas () {
      for (const loc of store.locations()) {
        try {
          await syncOne(loc)
        } catch (err) {
          if (!(err instanceof HashtagError)) throw err
        }
      }
    },
    async shrink (tagKey) {
      // the smaller set (even points) merges the added points' posts, then R halves (§7.2)
      for (const loc of store.locations()) {
        const h = store.history(loc)
        if (h === undefined || h.tagKey !== tagKey || h.redundancy <= DEFAULT_REDUNDANCY) continue
        const r = h.redundancy
        const mine = Number(ringDistance(tagKey, loc) / (RING_SIZE / BigInt(r)))
        if (mine % 2 === 1) continue
        for (let i = 1; i < r; i += 2) {
          const owner = (await node.lookup(replicaLocation(tagKey, i, r), { alive: true })).node
          const res = await node.call(owner.info, { type: 'storage.merge', tagKey: idToHex(tagKey), replica: i, redundancy: r, posts: [] }) as { posts: unknown[] }
          const now = clock.now()
          for (const p of res.posts) store.add(h, parsePost(p, now), now)
        }
        h.redundancy = r / 2
      }
    },
    setRedundancy (tagKey, redundancy) {
      assertRedundancy(redundancy)
      for (const loc of store.locations()) {
        const h = store.history(loc)
        if (h !== undefined && h.tagKey === tagKey) h.redundancy = redundancy
      }
    }
  }
}
