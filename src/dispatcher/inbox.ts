import { sql } from 'kysely'
import type { Db, Tx } from '../db/index.js'
import { Mutex } from '../crypto/mutex.js'
import type { Envelope } from '../wire/envelope.js'
import type { InboxEvent } from './types.js'

export interface InboxRow { from: string, seq: number, envelope: Envelope, json: string }

/**
 * Accepted events for local services. Every transaction that inserts here runs
 * under one lock, so ids become visible in order and a reader that keeps
 * "everything up to id N" never skips a row that commits later.
 */
export class Inbox {
  private readonly lock = new Mutex()
  private readonly listeners = new Set<(maxId: number) => void>()
  private maxId = 0

  constructor (private readonly db: Db) {}

  async load (): Promise<void> {
    this.maxId = await this.queryMaxId()
  }

  private async queryMaxId (): Promise<number> {
    const r = await this.db.selectFrom('inbox').select(sql<number>`coalesce(max(id), 0)`.as('m')).executeTakeFirst()
    return Number(r?.m ?? 0)
  }

  /** Run a transaction that may insert inbox rows; listeners hear about them after commit. */
  async write<T> (fn: (tx: Tx, insert: (rows: InboxRow[]) => Promise<void>) => Promise<T>): Promise<T> {
    return await this.lock.run(async () => {
      let top = 0
      const result = await this.db.transaction().execute(async (tx) => {
        return await fn(tx, async (rows) => {
          for (let i = 0; i < rows.length; i += 1000) {
            const chunk = rows.slice(i, i + 1000).map((r) => ({ from_uuid: r.from, seq: r.seq, name: r.envelope.name, envelope: r.json, exp: r.envelope.meta.exp }))
            const ids = await tx.insertInto('inbox').values(chunk).returning('id').execute()
            top = Math.max(top, ...ids.map((x) => Number(x.id)))
          }
        })
      })
      if (top > this.maxId) {
        this.maxId = top
        for (const l of this.listeners) l(top)
      }
      return result
    })
  }

  /**
   * Store one frame's accepted events from a peer, move the peer's
   * high-water mark to `lastIn` and save the ratchet record, atomically, in
   * ONE statement (data-modifying CTEs): a transaction would take five round
   * trips to the database, and on a busy box each one waits for the
   * scheduler. That was the largest share of a frame's receive time.
   */
  async acceptFrame (f: { from: string, rows: InboxRow[], lastIn: number, session: Uint8Array }): Promise<void> {
    await this.lock.run(async () => {
      const ins = f.rows.length === 0
        ? sql`SELECT NULL::bigint AS id WHERE false`
        : sql`INSERT INTO inbox (from_uuid, seq, name, envelope, exp) VALUES ${sql.join(f.rows.map((r) => sql`(${r.from}, ${r.seq}, ${r.envelope.name}, ${r.json}, ${r.envelope.meta.exp})`))} RETURNING id`
      const res = await sql<{ top: string | number }>`
        WITH ins AS (${ins}),
          mark AS (UPDATE peer_seq SET last_in = ${f.lastIn} WHERE peer_uuid = ${f.from} RETURNING 1),
          rs AS (INSERT INTO ratchet_sessions (peer_uuid, record, updated_at) VALUES (${f.from}, ${Buffer.from(f.session)}, now())
                 ON CONFLICT (peer_uuid) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at RETURNING 1)
        SELECT coalesce((SELECT max(id) FROM ins), 0) AS top`.execute(this.db)
      const top = Number(res.rows[0]?.top ?? 0)
      if (top > this.maxId) {
        this.maxId = top
        for (const l of this.listeners) l(top)
      }
    })
  }

  /** Most rows `acceptFrame` takes in one statement (bind parameters: 5 per row, 65,535 at most). */
  static readonly FRAME_ROWS_MAX = 4000

  onInbox (listener: (maxId: number) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  currentMaxId (): number { return this.maxId }

  async read (afterId: number, names: readonly string[], limit: number): Promise<InboxEvent[]> {
    if (names.length === 0) return []
    const rows = await this.db.selectFrom('inbox').select(['id', 'envelope'])
      .where('id', '>', String(afterId)).where('name', 'in', [...names])
      .where('id', '<=', String(this.maxId))
      .orderBy('id').limit(limit).execute()
    return rows.map((r) => ({ id: Number(r.id), envelope: JSON.parse(r.envelope) as Envelope }))
  }

  /** Drop rows every active service has acknowledged, and expired ones. */
  async prune (now: number): Promise<number> {
    const r = await this.db.selectFrom('services').select(sql<number>`min(delivered)`.as('m')).where('state', '=', 'active').executeTakeFirst()
    const floor = r?.m === null || r?.m === undefined ? this.maxId : Number(r.m)
    const res = await this.db.deleteFrom('inbox').where((eb) => eb.or([eb('id', '<=', String(floor)), eb('exp', '<', now)])).executeTakeFirst()
    return Number(res.numDeletedRows)
  }
}
