import { sql } from 'kysely'
import type { Db, Tx } from '../db/index.js'
import { Mutex } from '../crypto/mutex.js'
import type { Envelope } from '../wire/envelope.js'
import type { InboxEvent } from './types.js'

export interface InboxRow { from: string, seq: number, envelope: Envelope, json: string }

/** How many of the newest rows `read` serves from memory, and at most how many bytes of their JSON. */
const RECENT_MAX = 8192
const RECENT_MAX_BYTES = 16 * 1024 * 1024

/**
 * Accepted events for local services. Every transaction that inserts here runs
 * under one lock, so ids become visible in order and a reader that keeps
 * "everything up to id N" never skips a row that commits later.
 */
export class Inbox {
  private readonly lock = new Mutex()
  private readonly listeners = new Set<(maxId: number) => void>()
  private maxId = 0
  /**
   * The newest rows, in id order, as they were committed: every row with an
   * id above `recentFloor` is here, so a service that keeps up is served
   * without reading back what was just written (a query and a parse per
   * event). Older reads go to the database.
   */
  private recent: InboxEvent[] = []
  /** the JSON size of each row in `recent` (the memory they hold, roughly) */
  private recentSizes: number[] = []
  private recentBytes = 0
  private recentHead = 0
  private recentFloor = 0

  constructor (private readonly db: Db) {}

  async load (): Promise<void> {
    this.maxId = await this.queryMaxId()
    this.recent = []
    this.recentSizes = []
    this.recentBytes = 0
    this.recentHead = 0
    this.recentFloor = this.maxId
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
        // ids here are not matched to their rows: the cache starts again above them
        this.forgetRecentUpTo(top)
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
        ? sql`SELECT NULL::bigint AS id, NULL::bigint AS seq WHERE false`
        : sql`INSERT INTO inbox (from_uuid, seq, name, envelope, exp) VALUES ${sql.join(f.rows.map((r) => sql`(${r.from}, ${r.seq}, ${r.envelope.name}, ${r.json}, ${r.envelope.meta.exp})`))} RETURNING id, seq`
      const res = await sql<{ ids: Array<string | number> | null }>`
        WITH ins AS (${ins}),
          mark AS (UPDATE peer_seq SET last_in = ${f.lastIn} WHERE peer_uuid = ${f.from} RETURNING 1),
          rs AS (INSERT INTO ratchet_sessions (peer_uuid, record, updated_at) VALUES (${f.from}, ${Buffer.from(f.session)}, now())
                 ON CONFLICT (peer_uuid) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at RETURNING 1)
        SELECT (SELECT array_agg(id ORDER BY seq) FROM ins) AS ids`.execute(this.db)
      // rows come in ascending seq (Link.accept), so ids in seq order pair up with them
      const ids = (res.rows[0]?.ids ?? []).map(Number)
      if (ids.length === 0) return
      const fresh = f.rows.map((r, i) => ({ row: { id: ids[i] as number, envelope: r.envelope }, bytes: r.json.length })).sort((a, b) => a.row.id - b.row.id)
      const top = (fresh[fresh.length - 1] as { row: InboxEvent }).row.id
      if (top > this.maxId) {
        this.remember(fresh)
        this.maxId = top
        for (const l of this.listeners) l(top)
      } else {
        // not above what we had (cannot happen while ids only grow): not from memory, then
        this.forgetRecentUpTo(this.maxId)
      }
    })
  }

  private remember (rows: Array<{ row: InboxEvent, bytes: number }>): void {
    for (const r of rows) {
      this.recent.push(r.row)
      this.recentSizes.push(r.bytes)
      this.recentBytes += r.bytes
    }
    let drop = this.recentHead
    let bytes = this.recentBytes
    while (drop < this.recent.length && (this.recent.length - drop > RECENT_MAX || bytes > RECENT_MAX_BYTES)) bytes -= this.recentSizes[drop++] as number
    if (drop > this.recentHead) this.forgetRecentUpTo((this.recent[drop - 1] as InboxEvent).id)
  }

  /** Rows up to `id` are no longer served from memory. */
  private forgetRecentUpTo (id: number): void {
    while (this.recentHead < this.recent.length && (this.recent[this.recentHead] as InboxEvent).id <= id) this.recentBytes -= this.recentSizes[this.recentHead++] as number
    if (id > this.recentFloor) this.recentFloor = id
    if (this.recentHead > 4096) {
      this.recent = this.recent.slice(this.recentHead)
      this.recentSizes = this.recentSizes.slice(this.recentHead)
      this.recentHead = 0
    }
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
    if (afterId >= this.recentFloor) return this.readRecent(afterId, names, limit)
    const rows = await this.db.selectFrom('inbox').select(['id', 'envelope'])
      .where('id', '>', String(afterId)).where('name', 'in', [...names])
      .where('id', '<=', String(this.maxId))
      .orderBy('id').limit(limit).execute()
    return rows.map((r) => ({ id: Number(r.id), envelope: JSON.parse(r.envelope) as Envelope }))
  }

  private readRecent (afterId: number, names: readonly string[], limit: number): InboxEvent[] {
    const wanted = new Set(names)
    let lo = this.recentHead
    let hi = this.recent.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.recent[mid] as InboxEvent).id <= afterId) lo = mid + 1
      else hi = mid
    }
    const out: InboxEvent[] = []
    for (let i = lo; i < this.recent.length && out.length < limit; i++) {
      const r = this.recent[i] as InboxEvent
      if (wanted.has(r.envelope.name)) out.push(r)
    }
    return out
  }

  /** Drop rows every active service has acknowledged, and expired ones. */
  async prune (now: number): Promise<number> {
    const r = await this.db.selectFrom('services').select(sql<number>`min(delivered)`.as('m')).where('state', '=', 'active').executeTakeFirst()
    const floor = r?.m === null || r?.m === undefined ? this.maxId : Number(r.m)
    const res = await this.db.deleteFrom('inbox').where((eb) => eb.or([eb('id', '<=', String(floor)), eb('exp', '<', now)])).executeTakeFirst()
    // what is gone from the table is not handed out from memory either (expired rows are never delivered)
    this.forgetRecentUpTo(floor)
    return Number(res.numDeletedRows)
  }
}
