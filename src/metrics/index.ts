import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { Logger } from '../logger.js'

export interface PeerMetrics {
  uuid: string
  domain: string
  /** admitted state: active | banned */
  state: string
  /** link state: open | connecting | disconnected | none */
  connection: string
  /** events queued for this peer */
  outboxDepth: number
  /** age of the oldest queued event, seconds; null when the outbox is empty */
  outboxOldestSeconds: number | null
  /** seconds since the peer was last heard from; null if never */
  lastSeenSeconds: number | null
}

export interface ServiceMetrics {
  name: string
  /** active | revoked | banned */
  state: string
  /** inbox id up to which the service acknowledged */
  delivered: number
}

export interface CounterSnapshot {
  eventsIn: number
  eventsOut: number
  framesIn: number
  framesOut: number
  duplicates: number
  expiredInOutbox: number
  /** refusals by error code (bad-signature, expired, replayed, …) */
  refusals: Record<string, number>
}

export interface MetricsSnapshot {
  peers: PeerMetrics[]
  services: ServiceMetrics[]
  counters: CounterSnapshot
  /** the highest inbox id: a service's queue is inboxMaxId - delivered */
  inboxMaxId: number
  /** per peer, trees changed here and not yet pushed to it; null when [sync] is off */
  syncBacklog?: Array<{ peer: string, domain: string, trees: number }> | null
  /** a joining peer's account backfill; null when [ldap] is off */
  backfill?: { state: string, received: number, total: number } | null
}

/** What the metrics read, once per scrape. The daemon's is `contextMetricsSource(ctx)`. */
export interface MetricsSource {
  snapshot: () => Promise<MetricsSnapshot>
}

export interface MetricsServerInit {
  /**
   * Where to serve GET /metrics. Loopback by default: the figures name peers
   * and services, so expose them through a proxy or an SSH tunnel, not directly.
   * @default { host: '127.0.0.1', port: 9477 }
   */
  listen?: { host: string, port: number }
  /**
   * Also export prom-client's process and Node.js metrics (CPU, memory,
   * event loop lag, GC).
   * @default true
   */
  defaultMetrics?: boolean
}

export interface MetricsServerComponents {
  source: MetricsSource
  logger?: Logger
}

export const DEFAULT_METRICS_LISTEN = { host: '127.0.0.1', port: 9477 }

/**
 * Prometheus exposition for one peer, on its own Registry. Nothing is counted
 * on the hot path: every figure is read from the source when scraped.
 */
export class MetricsServer {
  readonly registry = new Registry()
  private server: Server | null = null
  private current: MetricsSnapshot | null = null
  private readonly listen: { host: string, port: number }

  constructor (init: MetricsServerInit, private readonly c: MetricsServerComponents) {
    this.listen = init.listen ?? DEFAULT_METRICS_LISTEN
    defineMetrics(this.registry, () => this.current)
    if (init.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry })
  }

  /** The exposition text, as GET /metrics serves it. */
  async render (): Promise<string> {
    this.current = await this.c.source.snapshot()
    try {
      return await this.registry.metrics()
    } finally {
      this.current = null
    }
  }

  async start (): Promise<{ host: string, port: number }> {
    if (this.server !== null) return this.address()
    const server = createServer((req, res) => { this.handle(req, res) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.listen.port, this.listen.host, () => { server.off('error', reject); resolve() })
    })
    this.server = server
    return this.address()
  }

  address (): { host: string, port: number } {
    const a = this.server?.address() as AddressInfo | null | undefined
    return a === null || a === undefined ? { ...this.listen } : { host: a.address, port: a.port }
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server === null) return
    this.server = null
    server.closeAllConnections()
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  }

  private handle (req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '').split('?')[0]
    if (path !== '/metrics') { reply(res, 404, 'not found: the only path is /metrics\n'); return }
    if (req.method !== 'GET') { res.setHeader('allow', 'GET'); reply(res, 405, 'method not allowed\n'); return }
    this.render().then((text) => {
      res.setHeader('content-type', this.registry.contentType)
      reply(res, 200, text)
    }, (err) => {
      this.c.logger?.warn({ err }, 'metrics scrape failed')
      reply(res, 500, `scrape failed: ${(err as Error).message}\n`)
    })
  }
}

function reply (res: ServerResponse, status: number, body: string): void {
  res.statusCode = status
  if (!res.hasHeader('content-type')) res.setHeader('content-type', 'text/plain; charset=utf-8')
  res.end(body)
}

type Snap = () => MetricsSnapshot | null

/** A counter whose total lives elsewhere (Stats): set it at collect time. */
function mirrorCounter (registry: Registry, name: string, help: string, read: (s: MetricsSnapshot) => number, snap: Snap): void {
  const c: Counter = new Counter({
    name,
    help,
    registers: [registry],
    collect () {
      const s = snap()
      if (s === null) return
      c.reset()
      c.inc(read(s))
    }
  })
}

function defineMetrics (registry: Registry, snap: Snap): void {
  mirrorCounter(registry, 'center_events_received_total', 'Events accepted from other peers', (s) => s.counters.eventsIn, snap)
  mirrorCounter(registry, 'center_events_sent_total', 'Events delivered to other peers (acknowledged)', (s) => s.counters.eventsOut, snap)
  mirrorCounter(registry, 'center_frames_received_total', 'Peer frames received', (s) => s.counters.framesIn, snap)
  mirrorCounter(registry, 'center_frames_sent_total', 'Peer frames sent', (s) => s.counters.framesOut, snap)
  mirrorCounter(registry, 'center_duplicate_events_total', 'Events received again and dropped as duplicates', (s) => s.counters.duplicates, snap)
  mirrorCounter(registry, 'center_outbox_expired_total', 'Events that expired in the outbox before delivery', (s) => s.counters.expiredInOutbox, snap)

  const refusals: Counter<'code'> = new Counter({
    name: 'center_refusals_total',
    help: 'Frames and events refused, by error code',
    labelNames: ['code'],
    registers: [registry],
    collect () {
      const s = snap()
      if (s === null) return
      refusals.reset()
      for (const [code, n] of Object.entries(s.counters.refusals)) refusals.inc({ code }, n)
    }
  })

  definePeerMetrics(registry, snap)
  defineServiceMetrics(registry, snap)
  defineFeatureMetrics(registry, snap)
}

function definePeerMetrics (registry: Registry, snap: Snap): void {
  const peerGauge = (name: string, help: string, read: (p: PeerMetrics) => number | null): void => {
    const g: Gauge<'peer' | 'domain'> = new Gauge({
      name,
      help,
      labelNames: ['peer', 'domain'],
      registers: [registry],
      collect () {
        const s = snap()
        if (s === null) return
        g.reset()
        for (const p of s.peers) {
          const v = read(p)
          if (v !== null) g.set({ peer: p.uuid, domain: p.domain }, v)
        }
      }
    })
  }
  peerGauge('center_peer_up', 'Whether the link to the peer is open (1) or not (0)', (p) => (p.connection === 'open' ? 1 : 0))
  peerGauge('center_peer_outbox_events', 'Events queued for the peer', (p) => p.outboxDepth)
  peerGauge('center_peer_outbox_oldest_age_seconds', 'Age of the oldest event queued for the peer', (p) => p.outboxOldestSeconds ?? 0)
  peerGauge('center_peer_last_seen_age_seconds', 'Seconds since the peer was last heard from (absent if never)', (p) => p.lastSeenSeconds)

  const states: Gauge<'peer' | 'domain' | 'state' | 'connection'> = new Gauge({
    name: 'center_peer_info',
    help: 'One series per admitted peer: admitted state and link state as labels',
    labelNames: ['peer', 'domain', 'state', 'connection'],
    registers: [registry],
    collect () {
      const s = snap()
      if (s === null) return
      states.reset()
      for (const p of s.peers) states.set({ peer: p.uuid, domain: p.domain, state: p.state, connection: p.connection }, 1)
    }
  })
}

function defineServiceMetrics (registry: Registry, snap: Snap): void {
  const inbox: Gauge = new Gauge({
    name: 'center_inbox_max_id',
    help: 'Highest inbox id: every event accepted for local services gets the next one',
    registers: [registry],
    collect () {
      const s = snap()
      if (s !== null) inbox.set(s.inboxMaxId)
    }
  })
  const serviceGauge = (name: string, help: string, read: (v: ServiceMetrics, s: MetricsSnapshot) => number): void => {
    const g: Gauge<'service' | 'state'> = new Gauge({
      name,
      help,
      labelNames: ['service', 'state'],
      registers: [registry],
      collect () {
        const s = snap()
        if (s === null) return
        g.reset()
        for (const v of s.services) g.set({ service: v.name, state: v.state }, read(v, s))
      }
    })
  }
  serviceGauge('center_service_delivered_id', 'Inbox id up to which the service acknowledged', (v) => v.delivered)
  serviceGauge('center_service_queue_ids', 'Inbox ids past the service\'s cursor (inbox_max_id - delivered): an upper bound on its queue', (v, s) => Math.max(0, s.inboxMaxId - v.delivered))
}

/** The /center sync backlog and the account backfill: series only when the feature is on. */
function defineFeatureMetrics (registry: Registry, snap: Snap): void {
  const backlog: Gauge<'peer' | 'domain'> = new Gauge({
    name: 'center_sync_backlog_trees',
    help: 'Trees under /center changed here and not yet pushed to the peer',
    labelNames: ['peer', 'domain'],
    registers: [registry],
    collect () {
      const s = snap()
      if (s === null) return
      backlog.reset()
      for (const p of s.syncBacklog ?? []) backlog.set({ peer: p.peer, domain: p.domain }, p.trees)
    }
  })
  const backfill = (name: string, help: string, read: (b: NonNullable<MetricsSnapshot['backfill']>) => number): void => {
    // labelled by state, so a peer with no backfill at all (no [ldap]) shows no series instead of a 0
    const g: Gauge<'state'> = new Gauge({
      name,
      help,
      labelNames: ['state'],
      registers: [registry],
      collect () {
        const b = snap()?.backfill
        g.reset()
        if (b !== null && b !== undefined) g.set({ state: b.state }, read(b))
      }
    })
  }
  backfill('center_account_backfill_received', 'Accounts this peer has received while joining', (b) => b.received)
  backfill('center_account_backfill_total', 'Accounts the sponsoring peer said there are (0 until known)', (b) => b.total)
  backfill('center_account_backfill_done', 'Whether the account backfill finished (1) or not (0)', (b) => (b.state === 'done' ? 1 : 0))
}
