import { sql } from 'kysely'
import type { Db, Tx } from '../db/index.js'
import { BadRequestError, UnknownPeerError, SchemaError } from '../errors.js'
import type { Logger } from '../logger.js'
import { BROADCAST, isEventName, nowSeconds, type Envelope } from '../wire/envelope.js'
import type { Inbox, InboxRow } from './inbox.js'
import type { OutgoingEvent } from './types.js'

export interface OutboxInit {
  defaultTtlSeconds: number
  maxTtlSeconds: number
  maxEventBytes: number
}

export interface OutboxComponents {
  db: Db
  inbox: Inbox
  logger: Logger
  self: string
  /** active peer UUIDs, for '*' */
  activePeers: () => string[]
  /** checks a direct `to` without building the list for every event */
  isActivePeer: (uuid: string) => boolean
  /** told which peers got new outbox rows, and the highest seq of each, after commit */
  onQueued: (tops: Map<string, number>) => void
}

interface Pending {
  service: string
  events: OutgoingEvent[]
  envelopes: Envelope[]
  /** each envelope as JSON, made once (its size is checked on it) */
  jsons: string[]
  resolve: (e: Envelope[]) => void
  reject: (err: unknown) => void
}

interface Row { peer: string, env: Envelope, json: string }

interface DirectRows { ord: number[], service: string[], nonce: Array<string | null>, peer: string[], name: string[], envelope: string[], exp: number[] }

/**
 * Queues events from local services. Requests that arrive while a commit is
 * running are gathered into the next one (group commit): one statement (or,
 * with a local copy, one transaction) per batch, which is what makes durable
 * sends fast.
 */
export class Outbox {
  private queue: Pending[] = []
  private running = false

  constructor (private readonly init: OutboxInit, private readonly c: OutboxComponents) {}

  async submit (service: string, events: OutgoingEvent[]): Promise<Envelope[]> {
    const jsons: string[] = []
    const envelopes = events.map((e) => this.envelope(e, jsons))
    return await new Promise((resolve, reject) => {
      this.queue.push({ service, events, envelopes, jsons, resolve, reject })
      if (!this.running) void this.drain()
    })
  }

  /** Validate one event and give it its RFC 3 envelope. Throws a typed error. */
  private envelope (e: OutgoingEvent, jsons: string[]): Envelope {
    if (!isEventName(e.name)) throw new SchemaError(`event name ${JSON.stringify(e.name)} is not kebab-case (optionally service-prefixed), at most 64 characters`)
    if (e.to !== BROADCAST && e.to !== this.c.self && !this.c.isActivePeer(e.to)) throw new UnknownPeerError(`no active peer ${JSON.stringify(e.to)}`)
    const ttl = e.ttlSeconds ?? this.init.defaultTtlSeconds
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > this.init.maxTtlSeconds) throw new BadRequestError(`ttl must be an integer from 1 to ${this.init.maxTtlSeconds} seconds`)
    const iat = nowSeconds()
    const env: Envelope = { name: e.name, meta: { from: this.c.self, to: e.to, iat, exp: iat + ttl }, data: e.data ?? null }
    const json = JSON.stringify(env)
    const size = Buffer.byteLength(json)
    if (size > this.init.maxEventBytes) throw new BadRequestError(`event is ${size} bytes, more than the ${this.init.maxEventBytes} allowed`)
    jsons.push(json)
    return env
  }

  private async drain (): Promise<void> {
    this.running = true
    try {
      while (this.queue.length > 0) {
        const batch = this.queue
        this.queue = []
        try {
          const peers = await this.commit(batch)
          for (const p of batch) p.resolve(p.envelopes)
          if (peers.size > 0) this.c.onQueued(peers)
        } catch (err) {
          for (const p of batch) p.reject(err)
        }
      }
    } finally {
      this.running = false
    }
  }

  private async commit (batch: Pending[]): Promise<Map<string, number>> {
    const direct = this.directRows(batch)
    if (direct !== null) return await this.commitDirect(direct)
    return await this.c.inbox.write(async (tx, insertInbox) => {
      const rows: Row[] = []
      const local: InboxRow[] = []
      const fresh = await this.fresh(tx, batch)
      batch.forEach((p, k) => { p.envelopes.forEach((env, i) => { if (fresh(k, i)) this.route(env, p.jsons[i] as string, rows, local) }) })
      const tops = await this.insertOutbox(tx, rows)
      await insertInbox(local)
      return tops
    })
  }

  /**
   * The batch as columns for `commitDirect`, or null when an event is for
   * us too (broadcast or to ourselves: it goes into the inbox as well, under
   * the inbox lock, by the transaction path).
   */
  private directRows (batch: Pending[]): DirectRows | null {
    const d: DirectRows = { ord: [], service: [], nonce: [], peer: [], name: [], envelope: [], exp: [] }
    let ord = 0
    for (const p of batch) {
      for (let i = 0; i < p.envelopes.length; i++, ord++) {
        const env = p.envelopes[i] as Envelope
        if (env.meta.to === BROADCAST || env.meta.to === this.c.self) return null
        const n = p.events[i]?.nonce
        d.ord.push(ord); d.service.push(p.service); d.nonce.push(typeof n === 'string' ? n : null)
        d.peer.push(env.meta.to); d.name.push(env.name); d.envelope.push(p.jsons[i] as string); d.exp.push(env.meta.exp)
      }
    }
    return d
  }

  /**
   * Events for other peers only, in ONE statement (data-modifying CTEs, the
   * batch passed as arrays): the nonces, each peer's sequence numbers and
   * the outbox rows, atomically. As a transaction this took five round trips
   * to the database, each a wait for the scheduler on a busy box. The first
   * copy of a (service, nonce) in the batch is the one kept, as `fresh` does.
   */
  private async commitDirect (d: DirectRows): Promise<Map<string, number>> {
    const res = await sql<{ wanted: string | number, tops: Array<[string, string | number]> | null }>`
      WITH ev AS (
          SELECT * FROM unnest(${d.ord}::int[], ${d.service}::text[], ${d.nonce}::text[], ${d.peer}::uuid[], ${d.name}::text[], ${d.envelope}::text[], ${d.exp}::bigint[])
            AS t(ord, service, nonce, peer, name, envelope, exp)),
        sends AS (INSERT INTO service_sends (service, nonce) SELECT DISTINCT service, nonce FROM ev WHERE nonce IS NOT NULL
          ON CONFLICT DO NOTHING RETURNING service, nonce),
        firsts AS (SELECT service, nonce, min(ord) AS ord FROM ev WHERE nonce IS NOT NULL GROUP BY service, nonce),
        keep AS (SELECT ev.* FROM ev WHERE ev.nonce IS NULL OR EXISTS (
          SELECT 1 FROM sends s JOIN firsts f ON f.service = s.service AND f.nonce = s.nonce
          WHERE s.service = ev.service AND s.nonce = ev.nonce AND f.ord = ev.ord)),
        counts AS (SELECT peer, count(*) AS n FROM keep GROUP BY peer),
        seqs AS (UPDATE peer_seq p SET next_out = p.next_out + c.n FROM counts c WHERE p.peer_uuid = c.peer
          RETURNING p.peer_uuid AS peer, p.next_out - c.n AS first, p.next_out - 1 AS top),
        ins AS (INSERT INTO outbox (peer_uuid, seq, name, envelope, exp)
          SELECT k.peer, s.first + row_number() OVER (PARTITION BY k.peer ORDER BY k.ord) - 1, k.name, k.envelope, k.exp
          FROM keep k JOIN seqs s ON s.peer = k.peer RETURNING 1)
      SELECT (SELECT count(*) FROM counts) AS wanted, (SELECT json_agg(json_build_array(peer, top)) FROM seqs) AS tops`.execute(this.c.db)
    const row = res.rows[0]
    const tops = new Map((row?.tops ?? []).map(([peer, top]) => [peer, Number(top)]))
    // admitting a peer makes its sequence row, forgetting one deletes it: only
    // a peer forgotten since its events were checked has none
    if (Number(row?.wanted ?? 0) > tops.size) this.c.logger.warn({ peers: Number(row?.wanted) - tops.size }, 'events for a peer forgotten while they were queued were dropped')
    return tops
  }

  /**
   * A retried send (same service and nonce) is queued once: which events are
   * new. One insert for the whole batch, not one per request it gathered.
   */
  private async fresh (tx: Tx, batch: Pending[]): Promise<(k: number, i: number) => boolean> {
    const keyOf = (service: string, nonce: string): string => `${service}\n${nonce}`
    const wanted = new Map<string, { service: string, nonce: string }>()
    for (const p of batch) for (const e of p.events) if (typeof e.nonce === 'string') wanted.set(keyOf(p.service, e.nonce), { service: p.service, nonce: e.nonce })
    if (wanted.size === 0) return () => true
    const values = [...wanted.values()]
    const inserted = new Set<string>()
    for (let i = 0; i < values.length; i += 5000) {
      const res = await tx.insertInto('service_sends').values(values.slice(i, i + 5000))
        .onConflict((oc) => oc.doNothing()).returning(['service', 'nonce']).execute()
      for (const r of res) inserted.add(keyOf(r.service, r.nonce))
    }
    return (k, i) => {
      const p = batch[k] as Pending
      const n = p.events[i]?.nonce
      if (typeof n !== 'string') return true
      // first event in this batch with a nonce wins; later copies of it are dropped too
      return inserted.delete(keyOf(p.service, n))
    }
  }

  private route (env: Envelope, json: string, rows: Row[], local: InboxRow[]): void {
    const to = env.meta.to
    if (to === BROADCAST || to === this.c.self) local.push({ from: this.c.self, seq: 0, envelope: env, json })
    if (to === BROADCAST) for (const peer of this.c.activePeers()) rows.push({ peer, env, json })
    else if (to !== this.c.self) rows.push({ peer: to, env, json })
  }

  /** Returns the highest seq each peer got. */
  private async insertOutbox (tx: Tx, rows: Row[]): Promise<Map<string, number>> {
    const next = new Map<string, number>()
    if (rows.length === 0) return next
    const counts = new Map<string, number>()
    for (const r of rows) counts.set(r.peer, (counts.get(r.peer) ?? 0) + 1)
    for (const [peer, n] of counts) {
      const r = await tx.updateTable('peer_seq').set((eb) => ({ next_out: eb('next_out', '+', n) }))
        .where('peer_uuid', '=', peer).returning('next_out').executeTakeFirst()
      if (r === undefined) throw new UnknownPeerError(`no sequence row for peer ${peer}`)
      next.set(peer, Number(r.next_out) - n)
    }
    const values = rows.map((r) => {
      const seq = next.get(r.peer) as number
      next.set(r.peer, seq + 1)
      return { peer_uuid: r.peer, seq, name: r.env.name, envelope: r.json, exp: r.env.meta.exp }
    })
    for (let i = 0; i < values.length; i += 1000) await tx.insertInto('outbox').values(values.slice(i, i + 1000)).execute()
    // `next` now holds each peer's next free seq
    return new Map([...next].map(([peer, seq]) => [peer, seq - 1]))
  }
}

/** Per peer: events waiting in the outbox and when the oldest was queued (status and /metrics). */
export async function outboxDepths (db: Db): Promise<Map<string, { depth: number, oldest: Date | null }>> {
  const rows = await db.selectFrom('outbox')
    .select(['peer_uuid', sql<number>`count(*)`.as('n'), sql<Date>`min(created_at)`.as('oldest')])
    .groupBy('peer_uuid').execute()
  return new Map(rows.map((r) => [r.peer_uuid, { depth: Number(r.n), oldest: r.oldest }]))
}
