import type { AppContext } from '../daemon.js'
import { outboxDepths } from '../dispatcher/outbox.js'
import type { CounterSnapshot, MetricsSnapshot, MetricsSource, PeerMetrics } from './index.js'

/** The numbers the metrics need from a running daemon: one small query per scrape. */
type MetricsContext = Pick<AppContext, 'database' | 'peers' | 'links' | 'registry' | 'dispatcher' | 'stats'> & Partial<Pick<AppContext, 'sync' | 'accounts'>>

const ageSeconds = (d: Date | null | undefined, now: number): number | null =>
  d === null || d === undefined ? null : Math.max(0, (now - new Date(d).getTime()) / 1000)

async function peers (c: MetricsContext, now: number): Promise<PeerMetrics[]> {
  const depths = await outboxDepths(c.database.db)
  return c.peers.list().map((p) => ({
    uuid: p.uuid,
    domain: p.domain,
    state: p.state,
    connection: c.links.get(p.uuid)?.state ?? 'none',
    outboxDepth: depths.get(p.uuid)?.depth ?? 0,
    outboxOldestSeconds: ageSeconds(depths.get(p.uuid)?.oldest, now),
    lastSeenSeconds: ageSeconds(p.lastSeen, now)
  }))
}

function counters (c: MetricsContext): CounterSnapshot {
  const s = c.stats
  return { eventsIn: s.eventsIn, eventsOut: s.eventsOut, framesIn: s.framesIn, framesOut: s.framesOut, duplicates: s.duplicates, expiredInOutbox: s.expiredInOutbox, refusals: { ...s.refusals } }
}

/** MetricsSource for `new MetricsServer(init, { source: contextMetricsSource(ctx) })`. */
export function contextMetricsSource (c: MetricsContext): MetricsSource {
  return {
    snapshot: async (): Promise<MetricsSnapshot> => {
      const now = Date.now()
      const services = await c.registry.list()
      return {
        peers: await peers(c, now),
        services: services.map((s) => ({ name: s.name, state: s.state, delivered: s.delivered })),
        counters: counters(c),
        inboxMaxId: c.dispatcher.inbox.currentMaxId(),
        syncBacklog: c.sync == null ? null : c.sync.status().peers.map((p) => ({ peer: p.peer, domain: p.domain, trees: p.backlog })),
        backfill: await backfillOf(c)
      }
    }
  }
}

async function backfillOf (c: MetricsContext): Promise<MetricsSnapshot['backfill']> {
  const svc = c.accounts?.service
  if (svc === null || svc === undefined) return null
  const b = await svc.backfillStatus()
  return { state: b.state, received: b.received, total: b.total ?? 0 }
}
