import { randomUUID } from 'node:crypto'
import { sql } from 'kysely'
import type { Db } from '../../src/db/index.js'
import type { DispatcherApi, InboxEvent, OutgoingEvent } from '../../src/dispatcher/types.js'
import { SchemaError } from '../../src/errors.js'
import { BROADCAST, isEventName, nowSeconds, type Envelope } from '../../src/wire/envelope.js'
import { isUuid } from '../../src/wire/frame.js'

/**
 * Stands in for the dispatcher, which has its own tests: the services side
 * depends only on DispatcherApi. Events go into the real `inbox` table (even
 * those addressed to other peers: there is no network here), and a send
 * nonce is recorded in the real `service_sends` table exactly as the
 * dispatcher does, so a retried send is queued once.
 */
export class TestDispatcher implements DispatcherApi {
  readonly uuid = randomUUID()
  private readonly listeners = new Set<(maxId: number) => void>()
  /** sizes of the submit calls, to see batching */
  readonly batches: number[] = []
  /** sends whose nonce was already recorded (answered, not queued again) */
  duplicates = 0
  /** fault injection: runs after the commit, before submit resolves */
  afterCommit: (() => Promise<void>) | null = null

  constructor (private readonly db: Db) {}

  async submit (service: string, events: OutgoingEvent[]): Promise<Envelope[]> {
    this.batches.push(events.length)
    for (const ev of events) {
      if (!isEventName(ev.name)) throw new SchemaError(`bad event name ${ev.name}`)
      if (ev.to !== BROADCAST && !isUuid(ev.to)) throw new SchemaError(`bad recipient ${ev.to}`)
    }
    const iat = nowSeconds()
    const envs = events.map((ev): Envelope => ({ name: ev.name, meta: { from: this.uuid, to: ev.to, iat, exp: iat + (ev.ttlSeconds ?? 3600) }, data: ev.data }))
    const maxId = await this.db.transaction().execute(async (tx) => {
      let max = 0
      for (const [i, ev] of events.entries()) {
        if (ev.nonce !== undefined) {
          const fresh = await tx.insertInto('service_sends').values({ service, nonce: ev.nonce })
            .onConflict((oc) => oc.doNothing()).returning('nonce').executeTakeFirst()
          if (fresh === undefined) { this.duplicates++; continue }
        }
        max = await this.insert(tx as unknown as Db, envs[i])
      }
      return max
    })
    if (this.afterCommit !== null) {
      const hook = this.afterCommit
      this.afterCommit = null
      await hook()
    }
    if (maxId > 0) this.notify(maxId)
    return envs
  }

  /** An event as if it had arrived from a remote peer. */
  async inject (name: string, data: unknown, opts: { ttl?: number, from?: string } = {}): Promise<number> {
    const iat = nowSeconds()
    const env: Envelope = { name, meta: { from: opts.from ?? randomUUID(), to: this.uuid, iat, exp: iat + (opts.ttl ?? 3600) }, data }
    const id = await this.insert(this.db, env)
    this.notify(id)
    return id
  }

  private async insert (db: Db, env: Envelope): Promise<number> {
    const row = await db.insertInto('inbox').values({
      from_uuid: env.meta.from, seq: 0, name: env.name, envelope: JSON.stringify(env), exp: env.meta.exp
    }).returning('id').executeTakeFirstOrThrow()
    return Number(row.id)
  }

  private notify (maxId: number): void {
    for (const l of this.listeners) l(maxId)
  }

  async readInbox (afterId: number, names: readonly string[], limit: number): Promise<InboxEvent[]> {
    if (names.length === 0) return []
    const rows = await this.db.selectFrom('inbox').select(['id', 'envelope'])
      .where('id', '>', String(afterId)).where('name', 'in', [...names])
      .orderBy('id').limit(limit).execute()
    return rows.map((r) => ({ id: Number(r.id), envelope: JSON.parse(r.envelope) as Envelope }))
  }

  async maxInboxId (): Promise<number> {
    const row = await this.db.selectFrom('inbox').select(sql<number>`coalesce(max(id), 0)`.as('max')).executeTakeFirstOrThrow()
    return Number(row.max)
  }

  onInbox (listener: (maxId: number) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }
}
