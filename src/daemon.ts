import { mkdir } from 'node:fs/promises'
import type { Config } from './config/index.js'
import { Database } from './db/index.js'
import { createRootLogger, subsystem, type Logger } from './logger.js'
import { Ratchet } from './crypto/ratchet.js'
import { createIdentity, identityExists, loadIdentity, type Identity } from './identity/files.js'
import { Dispatcher } from './dispatcher/index.js'
import { Refusals, Stats } from './dispatcher/stats.js'
import { PeerDirectory } from './peers/directory.js'
import { JoinService } from './peers/join.js'
import { PeerNetwork } from './peers/network.js'
import { Accounts } from './accounts/index.js'
import { accountAdminMethods } from './accounts/admin.js'
import { CenterSync } from './sync/service.js'
import { centerAdminMethods } from './cli/commands/center.js'
import { LinkManager } from './transport/manager.js'
import { PeerServer } from './transport/server.js'
import { AdminServer } from './admin/server.js'
import { adminMethods } from './admin/methods.js'
import { serviceAdminMethods } from './cli/commands/service.js'
import { ServiceRegistry } from './services/registry.js'
import { ServiceServer } from './services/server.js'
import { NotRunningError } from './errors.js'
import { MetricsServer } from './metrics/index.js'
import { contextMetricsSource } from './metrics/context.js'
import { nowSeconds } from './wire/envelope.js'
import { KeyRotation } from './peers/key-rotation.js'

export interface DaemonOverrides {
  /** tests pass a logger writing into memory */
  logger?: Logger
}

/** Everything a running peer is made of. Built once by `Daemon.create`. */
export interface AppContext {
  cfg: Config
  logger: Logger
  database: Database
  identity: Identity
  stats: Stats
  ratchet: Ratchet
  peers: PeerDirectory
  dispatcher: Dispatcher
  links: LinkManager
  join: JoinService
  network: PeerNetwork
  /** null when [ldap] url is not set (accounts not provisioned here) */
  accounts: Accounts | null
  /** null unless [sync] enabled: the /center live sync */
  sync: CenterSync | null
  server: PeerServer
  registry: ServiceRegistry
  services: ServiceServer
  admin: AdminServer
  metrics: MetricsServer | null
  /** `centerctl key rotate`, and peers' rotations */
  keys: KeyRotation
  advertise: () => string
}

const PRUNE_INTERVAL_MS = 60_000

/**
 * centerd: create() wires the components, start() brings them up in
 * dependency order, destroy() takes them down in reverse. Both are idempotent.
 */
export class Daemon {
  private state: 'initialized' | 'started' | 'destroyed' = 'initialized'
  private pruneTimer: NodeJS.Timeout | null = null
  private bound: string | null = null

  private constructor (readonly ctx: AppContext) {}

  static async create (cfg: Config, overrides: DaemonOverrides = {}): Promise<Daemon> {
    const root = overrides.logger ?? createRootLogger({ level: cfg.log.level })
    await mkdir(cfg.stateDir, { recursive: true, mode: 0o700 })
    const identity = identityExists(cfg.stateDir) ? await loadIdentity(cfg.stateDir) : await createIdentity(cfg.stateDir, cfg.peer.domain)
    const logger = root.child({ self: identity.uuid })
    const database = Database.open({ url: cfg.database.url, pgliteDir: cfg.database.pgliteDir }, { logger: subsystem(logger, 'db') })
    const db = database.db
    const stats = new Stats()
    const refusals = new Refusals(subsystem(logger, 'refusals'), stats)
    const ratchet = new Ratchet({ db, signal: identity.signal, localUuid: identity.uuid })
    const peers = new PeerDirectory({ db, ratchet })
    let links: LinkManager | null = null
    const dispatcher = new Dispatcher(cfg.limits, {
      db,
      logger: subsystem(logger, 'dispatcher'),
      self: identity.uuid,
      activePeers: () => peers.activeList().map((p) => p.uuid),
      isActivePeer: (uuid) => peers.active(uuid) !== undefined,
      onQueued: (tops) => { links?.queued(tops) }
    })
    const ctxRef: { advertise: () => string } = { advertise: () => '' }
    const join = new JoinService(cfg.limits, {
      db, identity, peers, logger: subsystem(logger, 'join'),
      advertise: () => ctxRef.advertise(),
      onSessionReset: async (peer, bundle) => { await links?.sessionReset(peer, bundle) },
      onSponsored: async (peer) => { await network.introduce(peer) }
    })
    const keys = new KeyRotation({ stateDir: cfg.stateDir, graceSeconds: cfg.limits.maxTtlSeconds }, { db, identity, peers, dispatcher, logger: subsystem(logger, 'keys') })
    links = new LinkManager({ limits: cfg.limits, delivery: cfg.delivery }, {
      db, inbox: dispatcher.inbox, ratchet, identity, peers, stats, refusals, logger: subsystem(logger, 'transport'), join: () => join, signingKey: (peer) => keys.signingKey(peer)
    })
    const linkManager = links
    const server = new PeerServer({ listen: cfg.peer.listen, maxFrameBytes: cfg.limits.maxFrameBytes }, { onConnection: (ws, req) => { linkManager.accept(ws, req) } })
    const registry = new ServiceRegistry({}, { db, dispatcher })
    const network: PeerNetwork = new PeerNetwork({ greeting: cfg.peer.greeting, excommunication: cfg.peer.excommunication }, {
      db, identity, peers, dispatcher, registry, join, logger: subsystem(logger, 'peers'), onBanned: (uuid) => { linkManager.drop(uuid) },
      advertise: () => ctxRef.advertise(),
      keyRotation: keys
    })
    const accounts = cfg.ldap.url === null ? null : new Accounts(cfg, {}, { db, self: identity.uuid, dispatcher, registry, peers, logger: subsystem(logger, 'accounts') })
    const sync = !cfg.sync.enabled ? null : new CenterSync({ root: cfg.center.root, stateDir: cfg.stateDir, sync: cfg.sync, userLimitBytes: cfg.center.userLimitBytes }, { dispatcher, registry, peers, identity, logger: subsystem(logger, 'sync') })
    const services = new ServiceServer({ socket: cfg.services.socket }, { logger: subsystem(logger, 'services'), registry, dispatcher })
    const methodsRef: { ctx: AppContext | null } = { ctx: null }
    const admin = new AdminServer({ socket: cfg.admin.socket }, { logger: subsystem(logger, 'admin'), methods: { ...adminMethods(() => methodsRef.ctx), ...serviceAdminMethods(registry), ...accountAdminMethods(() => methodsRef.ctx?.accounts), ...centerAdminMethods(() => methodsRef.ctx?.sync ?? null) } })
    const ctx: AppContext = { cfg, logger, database, identity, stats, ratchet, peers, dispatcher, links: linkManager, join, network, accounts, sync, server, registry, services, admin, metrics: null, keys, advertise: () => '' }
    const daemon = new Daemon(ctx)
    ctx.advertise = ctxRef.advertise = () => daemon.advertise()
    methodsRef.ctx = ctx
    if (cfg.metrics.listen !== null) ctx.metrics = new MetricsServer({ listen: cfg.metrics.listen }, { source: contextMetricsSource(ctx), logger: subsystem(logger, 'metrics') })
    return daemon
  }

  /** Where other peers reach us: the configured address, or the bound one. */
  advertise (): string {
    if (this.ctx.cfg.peer.advertise !== null) return this.ctx.cfg.peer.advertise
    if (this.bound !== null) return this.bound
    const { host, port } = this.ctx.cfg.peer.listen
    return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
  }

  async start (): Promise<void> {
    if (this.state === 'started') return
    if (this.state === 'destroyed') throw new NotRunningError('a destroyed daemon cannot be started again')
    const { ctx } = this
    try {
      const applied = await ctx.database.migrateToLatestOrThrow()
      if (applied.length > 0) ctx.logger.info({ applied }, 'database migrated')
      await ctx.peers.load()
      await ctx.dispatcher.load()
      await ctx.keys.start()
      const addr = await ctx.server.start()
      const host = addr.host === '0.0.0.0' || addr.host === '::' ? ctx.identity.domain : addr.host
      this.bound = host.includes(':') ? `[${host}]:${addr.port}` : `${host}:${addr.port}`
      await ctx.links.start()
      await ctx.network.start()
      await ctx.accounts?.start()
      await ctx.sync?.start()
      await ctx.services.start()
      await ctx.admin.start()
      await this.startMetrics()
    } catch (err) {
      await this.destroy().catch(() => {})
      throw err
    }
    this.state = 'started'
    this.pruneTimer = setInterval(() => { this.prune().catch((err) => { ctx.logger.warn({ err }, 'housekeeping failed') }) }, PRUNE_INTERVAL_MS)
    this.pruneTimer.unref()
    ctx.logger.info({
      uuid: ctx.identity.uuid,
      domain: ctx.identity.domain,
      listen: `${ctx.server.address().host}:${ctx.server.address().port}`,
      advertise: this.advertise(),
      admin: ctx.cfg.admin.socket,
      services: ctx.cfg.services.socket,
      database: ctx.database.embedded ? `pglite:${ctx.cfg.database.pgliteDir}` : 'postgresql',
      metrics: ctx.metrics === null ? null : `${ctx.metrics.address().host}:${ctx.metrics.address().port}`
    }, 'center peer started')
  }

  /** Metrics are for humans: a taken port costs a warning, not the peer. */
  private async startMetrics (): Promise<void> {
    const m = this.ctx.metrics
    if (m === null) return
    try {
      await m.start()
    } catch (err) {
      this.ctx.logger.warn({ err: (err as Error).message, listen: this.ctx.cfg.metrics.listen }, 'metrics endpoint not started')
      this.ctx.metrics = null
    }
  }

  private async prune (): Promise<void> {
    const now = nowSeconds()
    const db = this.ctx.database.db
    await this.ctx.dispatcher.inbox.prune(now)
    await db.deleteFrom('seen_nonces').where('exp', '<', now).execute()
    await db.deleteFrom('service_sends').where('created_at', '<', new Date(Date.now() - 24 * 3600_000)).execute()
  }

  async destroy (): Promise<void> {
    if (this.state === 'destroyed') return
    this.state = 'destroyed'
    const { ctx } = this
    if (this.pruneTimer !== null) clearInterval(this.pruneTimer)
    await ctx.metrics?.stop().catch(() => {})
    await ctx.admin.stop().catch(() => {})
    await ctx.services.stop().catch(() => {})
    await ctx.accounts?.stop().catch(() => {})
    await ctx.sync?.stop().catch(() => {})
    await ctx.network.stop().catch(() => {})
    ctx.links.stop()
    await ctx.server.stop().catch(() => {})
    await ctx.database.close().catch(() => {})
    ctx.logger.info('center peer stopped')
  }

  async [Symbol.asyncDispose] (): Promise<void> { await this.destroy() }
}
