import { EventEmitter } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import { BadRequestError, BadTokenError, ConflictError, NotFoundError } from '../errors.js'
import type { Db } from '../db/index.js'
import type { DispatcherApi } from '../dispatcher/types.js'
import { isEventName } from '../wire/envelope.js'

/** A local service as the daemon knows it. The token itself is never kept. */
export interface ServiceRecord {
  name: string
  /** event names it may receive */
  receive: string[]
  /** event names it may send */
  send: string[]
  /** inbox id up to which it acknowledged */
  delivered: number
  state: 'active' | 'revoked' | 'banned'
  createdAt: Date
  updatedAt: Date
}

/** What `add` returns: the only time the token is seen. */
export interface NewService {
  name: string
  token: string
  receive: string[]
  send: string[]
}

export interface Grants {
  receive: readonly string[]
  send: readonly string[]
}

export interface ServiceRegistryEvents {
  /** after every add/update/revoke commits, so live connections can apply it */
  changed: [name: string]
}

export interface ServiceRegistryInit {
  /** most event names in one grant list; @default 256 */
  maxNames?: number
}

export interface ServiceRegistryComponents {
  db: Db
  /** a new service starts at the current end of the inbox: it gets no history */
  dispatcher: Pick<DispatcherApi, 'maxInboxId'>
}

export const SERVICE_NAME = /^[a-z][a-z0-9-]{0,31}$/
/** the daemon's own subscribers; only they may hold un-prefixed (RFC 3 core) event names */
/** the built-in peers service (src/peers/network.ts) */
export const PEERS_SERVICE = 'center-peers'
/** the built-in /center sync service (src/sync/service.ts) */
export const SYNC_SERVICE = 'center-sync'
/** the built-in accounts service (src/accounts/service.ts) */
export const ACCOUNTS_SERVICE = 'center-accounts'
export const BUILTIN_SERVICES = new Set([PEERS_SERVICE, SYNC_SERVICE, ACCOUNTS_SERVICE])
export const DEFAULT_MAX_NAMES = 256
const TOKEN_BYTES = 32
// base64url of 32 bytes is 43 characters; anything much longer is not ours
const MAX_TOKEN_LENGTH = 128
const BAD_TOKEN = 'unknown or revoked service token'

export function isServiceName (s: unknown): s is string {
  return typeof s === 'string' && SERVICE_NAME.test(s)
}

function sha256 (token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}

type Row = {
  name: string
  receive: string[]
  send: string[]
  delivered: string | number
  state: 'active' | 'revoked' | 'banned'
  created_at: Date
  updated_at: Date
}

function toRecord (r: Row): ServiceRecord {
  return {
    name: r.name,
    receive: r.receive,
    send: r.send,
    delivered: Number(r.delivered),
    state: r.state,
    createdAt: r.created_at,
    updatedAt: r.updated_at
  }
}

const COLUMNS = ['name', 'receive', 'send', 'delivered', 'state', 'created_at', 'updated_at'] as const

/**
 * The `services` table: which local services exist, what the sysadmin
 * granted them, and how far each has acknowledged the inbox.
 */
export class ServiceRegistry extends EventEmitter<ServiceRegistryEvents> {
  private readonly maxNames: number

  constructor (init: ServiceRegistryInit, private readonly c: ServiceRegistryComponents) {
    super()
    this.maxNames = init.maxNames ?? DEFAULT_MAX_NAMES
  }

  /** Validate an event-name list; returns it deduplicated, in first-seen order. */
  checkNames (list: unknown, field: string, service = ''): string[] {
    if (!Array.isArray(list)) throw new BadRequestError(`${field} must be a list of event names`)
    const out = [...new Set(list)]
    if (out.length > this.maxNames) throw new BadRequestError(`${field} has ${out.length} event names, at most ${this.maxNames} are allowed`)
    const bad = out.find((n) => !isEventName(n))
    if (bad !== undefined) throw new BadRequestError(`${field}: ${JSON.stringify(bad)} is not an event name (kebab-case, optionally service-prefixed, at most 64 characters)`)
    // un-prefixed names (peer-table, excommunication, ...) are RFC 3's own: a
    // service granted one could speak for the whole box
    const core = out.find((n) => !(n as string).includes('.'))
    if (core !== undefined && !BUILTIN_SERVICES.has(service)) throw new BadRequestError(`${field}: ${JSON.stringify(core)} is reserved for the daemon; a service's events are named service.event`)
    return out as string[]
  }

  private checkName (name: unknown): string {
    if (!isServiceName(name)) throw new BadRequestError(`service name ${JSON.stringify(name)} must match ${SERVICE_NAME.source}`)
    return name
  }

  async add (name: string, grants: Grants): Promise<NewService> {
    this.checkName(name)
    const receive = this.checkNames(grants.receive, 'receive', name)
    const send = this.checkNames(grants.send, 'send', name)
    const token = randomBytes(TOKEN_BYTES).toString('base64url')
    const delivered = await this.c.dispatcher.maxInboxId()
    const now = new Date()
    const row = { name, token_sha256: sha256(token), receive, send, delivered, state: 'active' as const, created_at: now, updated_at: now }
    // a revoked name may be re-added (new token, fresh cursor); an active or banned one may not
    const res = await this.c.db.insertInto('services').values(row)
      .onConflict((oc) => oc.column('name').doUpdateSet(row).where('services.state', '=', 'revoked'))
      .returning('name')
      .executeTakeFirst()
    if (res === undefined) throw new ConflictError(`service ${name} already exists`)
    this.emit('changed', name)
    return { name, token, receive, send }
  }

  async list (): Promise<ServiceRecord[]> {
    const rows = await this.c.db.selectFrom('services').select(COLUMNS).orderBy('name').execute()
    return rows.map(toRecord)
  }

  async get (name: string): Promise<ServiceRecord> {
    const row = await this.c.db.selectFrom('services').select(COLUMNS).where('name', '=', name).executeTakeFirst()
    if (row === undefined) throw new NotFoundError(`no service named ${JSON.stringify(name)}`)
    return toRecord(row)
  }

  /** Replace the given grant lists of an active service. */
  async update (name: string, grants: Partial<Grants>): Promise<ServiceRecord> {
    this.checkName(name)
    const set: { receive?: string[], send?: string[], updated_at: Date } = { updated_at: new Date() }
    if (grants.receive !== undefined) set.receive = this.checkNames(grants.receive, 'receive', name)
    if (grants.send !== undefined) set.send = this.checkNames(grants.send, 'send', name)
    const row = await this.c.db.updateTable('services').set(set)
      .where('name', '=', name).where('state', '=', 'active')
      .returning(COLUMNS).executeTakeFirst()
    if (row === undefined) throw new NotFoundError(`no active service named ${JSON.stringify(name)}`)
    this.emit('changed', name)
    return toRecord(row)
  }

  /** Revoke the token. Live connections are closed by the server on `changed`. */
  async revoke (name: string): Promise<ServiceRecord> {
    this.checkName(name)
    const row = await this.c.db.updateTable('services').set({ state: 'revoked', updated_at: new Date() })
      .where('name', '=', name).where('state', '=', 'active')
      .returning(COLUMNS).executeTakeFirst()
    if (row === undefined) throw new NotFoundError(`no active service named ${JSON.stringify(name)}`)
    this.emit('changed', name)
    return toRecord(row)
  }

  /** The active service a token belongs to. The same error for every failure, and never the token. */
  async authenticate (token: unknown): Promise<ServiceRecord> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) throw new BadTokenError(BAD_TOKEN)
    const row = await this.c.db.selectFrom('services').select(COLUMNS)
      .where('token_sha256', '=', sha256(token)).executeTakeFirst()
    if (row === undefined || row.state !== 'active') throw new BadTokenError(BAD_TOKEN)
    return toRecord(row)
  }

  /** Move the acknowledged cursor forward; a late or stale ack never moves it back. */
  async setDelivered (name: string, id: number): Promise<void> {
    await this.c.db.updateTable('services')
      .set((eb) => ({ delivered: eb.fn('greatest', [eb.ref('delivered'), eb.val(id)]) }))
      .where('name', '=', name)
      .execute()
  }
}
