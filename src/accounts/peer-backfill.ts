import type { Kysely } from 'kysely'
import type { PeerBackfillReport } from './events.js'
import type { AccountsSchema } from './store.js'

/** What this peer knows of another's backfill: `joining` until that peer says it has every account. */
export interface PeerBackfillView { state: 'joining' | 'joined', received: number, total: number }

/**
 * RFC 3: a joining peer is shown as "joining" by the others until it has
 * every account. Each peer broadcasts its own backfill (`user-backfill-state`);
 * the others keep the newest report per peer here. A peer that asks us for
 * backfill pages is joining even before its first report reaches us (the row
 * then has the epoch as its time, so any real report replaces it).
 */
export class PeerBackfillReports {
  constructor (private readonly db: Kysely<AccountsSchema>) {}

  async record (peer: string, r: PeerBackfillReport): Promise<void> {
    const row = { peer_uuid: peer, state: r.state, received: r.received, total: r.total, at: new Date(r.at) }
    // done is final (a peer backfills once), so it wins whatever its time; a
    // progress report only replaces an older one (delivery may reorder them)
    await this.db.insertInto('account_peer_backfill').values(row)
      .onConflict((oc) => {
        const set = oc.column('peer_uuid').doUpdateSet({ state: row.state, received: row.received, total: row.total, at: row.at })
        return r.state === 'done' ? set : set.where('account_peer_backfill.at', '<', row.at).where('account_peer_backfill.state', '=', 'running')
      })
      .execute()
  }

  /** A backfill request from `peer`: it is joining, unless it already said otherwise. */
  async asked (peer: string, total: number): Promise<void> {
    await this.db.insertInto('account_peer_backfill').values({ peer_uuid: peer, state: 'running', received: 0, total, at: new Date(0) })
      .onConflict((oc) => oc.column('peer_uuid').doNothing()).execute()
  }

  async all (): Promise<Map<string, PeerBackfillView>> {
    const rows = await this.db.selectFrom('account_peer_backfill').selectAll().execute()
    return new Map(rows.map((r) => [r.peer_uuid, { state: r.state === 'done' ? 'joined' : 'joining', received: r.received, total: r.total }]))
  }
}
