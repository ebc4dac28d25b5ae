import type { AppContext } from '../daemon.js'
import { outboxDepths } from '../dispatcher/outbox.js'
import { BadRequestError, NotFoundError, NotRunningError } from '../errors.js'
import { isUuid } from '../wire/frame.js'
import type { AdminMethods } from './server.js'

const str = (p: Record<string, unknown>, k: string): string => {
  const v = p[k]
  if (typeof v !== 'string' || v === '') throw new BadRequestError(`parameter ${k} is required`)
  return v
}

const uuidParam = (p: Record<string, unknown>): string => {
  const v = str(p, 'uuid')
  if (!isUuid(v)) throw new BadRequestError(`${JSON.stringify(v)} is not a lowercase UUID`)
  return v
}

/** The admin socket's methods. Each is small: the work is in the components. */
export function adminMethods (get: () => AppContext | null): AdminMethods {
  const ctx = (): AppContext => {
    const c = get()
    if (c === null) throw new NotRunningError('daemon is starting')
    return c
  }
  const methods: AdminMethods = {
    whoami: async () => whoami(ctx()),
    status: async () => await status(ctx()),
    'peer.list': async () => await peerList(ctx()),
    'peer.invite': async (p) => await ctx().join.invite(str(p, 'admin'), p.proofs === undefined ? 1 : Number(p.proofs)),
    'peer.join': async (p) => await ctx().join.join({ peer: str(p, 'peer'), uuid: uuidParam(p), publicKey: str(p, 'publicKey'), admin: str(p, 'admin'), secretFile: str(p, 'secretFile'), secret: str(p, 'secret') }),
    'peer.requests': async () => await ctx().join.requests(),
    'peer.approve': async (p) => await ctx().join.approve(uuidParam(p)),
    'peer.reject': async (p) => { await ctx().join.reject(uuidParam(p)); return { rejected: true } },
    'peer.ban': async (p) => await ctx().network.ban(uuidParam(p), str(p, 'reason')),
    'peer.bans': async () => await ctx().network.bans(),
    'key.rotate': async () => await ctx().keys.rotate(),
    'key.status': async () => ctx().keys.status(),
    'peer.ping': async (p) => {
      const uuid = uuidParam(p)
      const link = ctx().links.get(uuid)
      if (link === undefined) throw new NotFoundError(`no admitted peer ${uuid}`)
      return { uuid, ms: await link.ping() }
    }
  }
  return methods
}

function whoami (c: AppContext): Record<string, unknown> {
  return { uuid: c.identity.uuid, domain: c.identity.domain, address: c.advertise(), fingerprint: c.identity.fingerprint, publicKey: c.identity.publicArmored }
}

async function peerList (c: AppContext): Promise<Array<Record<string, unknown>>> {
  const depths = await outboxDepths(c.database.db)
  // RFC 3: "joining" until that peer has every account (null: no accounts here, or it never said)
  const backfill = await c.accounts?.service?.peerBackfill() ?? new Map()
  return c.peers.list().map((p) => {
    const bf = backfill.get(p.uuid)
    const link = c.links.get(p.uuid)
    return {
      uuid: p.uuid,
      domain: p.domain,
      address: p.address,
      fingerprint: p.fingerprint,
      state: p.state,
      connection: link?.state ?? 'none',
      role: link?.role ?? null,
      connectedSince: link?.connectedSince ?? null,
      unreachableSince: link?.unreachableSince ?? null,
      lastSeen: p.lastSeen,
      lastError: link?.lastError ?? null,
      clockOffsetSeconds: link?.clock.offsetSeconds() ?? null,
      outbox: depths.get(p.uuid)?.depth ?? 0,
      outboxOldest: depths.get(p.uuid)?.oldest ?? null,
      accounts: bf === undefined ? null : bf.state === 'joined' ? 'joined' : `joining ${bf.received}/${bf.total}`
    }
  })
}

async function status (c: AppContext): Promise<Record<string, unknown>> {
  const services = await c.registry.list()
  return {
    ...whoami(c),
    publicKey: undefined,
    uptimeSeconds: Math.round(process.uptime()),
    database: c.database.embedded ? 'pglite' : 'postgresql',
    peers: await peerList(c),
    services: services.map((s) => ({ name: s.name, state: s.state, receive: s.receive, send: s.send, delivered: s.delivered })),
    serviceConnections: c.services.connections,
    inboxMaxId: c.dispatcher.inbox.currentMaxId(),
    stats: c.stats.snapshot(),
    // null when this peer provisions no LDAP ([ldap] url unset)
    accounts: (await c.accounts?.service?.status()) ?? null
  }
}
