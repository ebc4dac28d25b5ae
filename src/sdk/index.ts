/**
 * center/sdk: how a local service talks to `centerd`.
 *
 * ```js
 * import { connectService } from 'center/sdk'
 * const svc = await connectService({ socket: '/run/center/services.sock', token })
 * await svc.subscribe(['echo.ping'], async (ev) => {
 *   await svc.send('echo.pong', ev.data, { to: ev.meta.from })
 * })
 * ```
 *
 * The wire protocol is specified in docs/sdk.md.
 */
import { EventEmitter } from 'node:events'
import { connect, type Socket } from 'node:net'
import { randomUUID } from 'node:crypto'
import { onLines, writeLine } from '../rpc/ndjson.js'
import type { Meta, ServerMsg, WireError } from '../services/protocol.js'

export interface EventMeta {
  /** the sending peer's UUID */
  from: string
  /** a peer UUID or '*' */
  to: string
  /** issued at, seconds since the epoch */
  iat: number
  /** expires at, seconds since the epoch */
  exp: number
}

/** One event handed to a subscriber. `id` grows with arrival order on this peer. */
export interface ServiceEvent {
  id: number
  name: string
  meta: EventMeta
  data: unknown
}

export type EventHandler = (event: ServiceEvent) => void | Promise<void>

export interface SendOptions {
  /** a peer UUID, or '*' for every peer and local subscriber; @default '*' */
  to?: string
  /** seconds until the event expires; @default the daemon's default TTL */
  ttl?: number
  /** your id for this send: a retry with the same nonce is queued once; @default a random UUID */
  nonce?: string
}

/** pino-compatible; anything with these four methods will do */
export interface SdkLogger {
  debug: (obj: object, msg?: string) => void
  info: (obj: object, msg?: string) => void
  warn: (obj: object, msg?: string) => void
  error: (obj: object, msg?: string) => void
}

export interface ConnectServiceOptions {
  /** path of the daemon's services socket */
  socket: string
  /** the token `centerctl service add` printed */
  token: string
  /** start after this event id (e.g. one you persisted); @default the daemon's saved cursor */
  resumeAfter?: number
  /** reconnect after the connection drops; @default true */
  reconnect?: boolean
  logger?: SdkLogger
}

export interface ConnectedInfo {
  service: string
  /** this peer's UUID */
  peer: string
  receive: string[]
  send: string[]
}

export interface ServiceClientEvents {
  /** on every (re)connection; the first one happens before `connectService` resolves */
  connected: [info: ConnectedInfo]
  disconnected: [err: Error | undefined]
  /** refusals that belong to no call (e.g. a handler threw, a resubscribe was refused) */
  error: [err: Error]
  /** the sysadmin changed this service's grants */
  grants: [grants: { receive: string[], send: string[] }]
}

export interface ServiceClient extends EventEmitter<ServiceClientEvents> {
  /** grants as of the last welcome or change */
  readonly grants: { receive: string[], send: string[] }
  /** the highest event id handed to a handler so far */
  readonly lastEventId: number
  /** Subscribe; resolves once the daemon agreed, rejects with its refusal (e.g. NotGrantedError). */
  subscribe: (names: string[], handler: EventHandler) => Promise<string[]>
  /** Queue an event for the network; resolves with its meta once the daemon committed it. */
  send: (name: string, data: unknown, opts?: SendOptions) => Promise<EventMeta>
  /** Close the connection; unanswered calls reject. Safe to call twice. */
  close: () => Promise<void>
}

/** A refusal from the daemon (its `name` and `code`), or the connection ending under a call. */
export class ServiceError extends Error {
  readonly code: string
  constructor (name: string, code: string, message: string) {
    super(message)
    this.name = name
    this.code = code
  }

  static from (e: WireError): ServiceError {
    return new ServiceError(e.name, e.code, e.message)
  }
}

const closedError = (why: string): ServiceError => new ServiceError('ConnectionClosedError', 'closed', why)

export const BACKOFF_MIN_MS = 100
export const BACKOFF_MAX_MS = 5000
const ACK_DELAY_MS = 20
const ACK_EVERY = 256
const MAX_LINE = 64 * 1024 * 1024

/** Capped exponential backoff with jitter, so many services restarted together do not reconnect in step. */
export function backoffMs (attempt: number): number {
  const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt)
  return cap / 2 + Math.random() * cap / 2
}

interface Pending {
  msg: Record<string, unknown> & { id: number }
  resolve: (v: any) => void
  reject: (err: Error) => void
  handler?: EventHandler
}

/** Connect and say hello; resolves after the first welcome. */
export async function connectService (opts: ConnectServiceOptions): Promise<ServiceClient> {
  const client = new Client(opts)
  await client.ready
  return client
}

class Client extends EventEmitter<ServiceClientEvents> implements ServiceClient {
  grants: { receive: string[], send: string[] } = { receive: [], send: [] }
  lastEventId: number
  readonly ready: Promise<void>
  private readyCb!: { resolve: () => void, reject: (err: Error) => void }
  private sock: Socket | null = null
  private welcomed = false
  private closing: Promise<void> | null = null
  private fatalErr: Error | null = null
  private lastErr: Error | null = null
  private attempt = 0
  private retryTimer: NodeJS.Timeout | null = null
  private nextId = 1
  // Map keeps insertion order: unanswered calls are replayed in the order they were made
  private readonly pending = new Map<number, Pending>()
  private readonly handlers = new Map<string, EventHandler>()
  private queue: ServiceEvent[] = []
  private handling = false
  private doneUpTo = 0
  /** the handler running now: close() lets it finish so its event is acked */
  private current: Promise<void> | null = null
  private ackedUpTo = 0
  private sinceAck = 0
  private ackTimer: NodeJS.Timeout | null = null
  private readonly log: SdkLogger | undefined

  constructor (private readonly opts: ConnectServiceOptions) {
    super()
    this.log = opts.logger
    this.lastEventId = opts.resumeAfter ?? 0
    this.doneUpTo = this.ackedUpTo = this.lastEventId
    this.ready = new Promise((resolve, reject) => { this.readyCb = { resolve, reject } })
    this.ready.catch(() => {})
    this.open()
  }

  // ---- connection ----

  private open (): void {
    const sock = connect(this.opts.socket)
    this.sock = sock
    sock.on('connect', () => {
      const hello: Record<string, unknown> = { op: 'hello', token: this.opts.token }
      if (this.opts.resumeAfter !== undefined || this.lastEventId > 0) hello.resumeAfter = this.lastEventId
      writeLine(sock, hello)
    })
    sock.on('error', (err) => {
      this.lastErr = err
      this.log?.debug({ err }, 'services socket error')
    })
    sock.on('close', () => { this.dropped(sock) })
    onLines(sock, MAX_LINE, (msg) => { this.onMessage(msg as ServerMsg) }, (err) => { this.report(err) })
  }

  private dropped (sock: Socket): void {
    if (this.sock !== sock) return
    this.sock = null
    const was = this.welcomed
    this.welcomed = false
    // events not yet handed over come again after reconnect, from lastEventId on
    this.queue = []
    this.resubs.clear()
    this.clearAckTimer()
    if (was) this.emit('disconnected', this.fatalErr ?? undefined)
    const final = this.closing !== null || this.fatalErr !== null || this.opts.reconnect === false
    if (final) return this.shutdown(this.fatalErr ?? closedError(`connection closed${this.lastErr === null ? '' : ': ' + this.lastErr.message}`))
    const delay = backoffMs(this.attempt++)
    this.log?.info({ delayMs: Math.round(delay) }, 'services socket lost, reconnecting')
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      this.open()
    }, delay)
  }

  /** The end: every call still waiting rejects with `err`. */
  private shutdown (err: Error): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    this.retryTimer = null
    for (const p of this.pending.values()) p.reject(err)
    this.pending.clear()
    this.readyCb.reject(err)
  }

  private onMessage (m: ServerMsg): void {
    switch (m.op) {
      case 'welcome': return this.onWelcome(m.service, m.peer, m.receive, m.send)
      case 'event': return this.onEvent({ id: m.id, name: m.name, meta: m.meta, data: m.data })
      case 'subscribed': return this.answer(m.id, (p) => {
        if (p.handler !== undefined) for (const n of m.names) this.handlers.set(n, p.handler)
        p.resolve(m.names)
      })
      case 'sent': return this.answer(m.id, (p) => { p.resolve(m.meta as Meta) })
      case 'grants':
        this.grants = { receive: m.receive, send: m.send }
        this.emit('grants', this.grants)
        return
      case 'error': return this.onError(m.id, ServiceError.from(m.error))
    }
  }

  private onWelcome (service: string, peer: string, receive: string[], send: string[]): void {
    const sock = this.sock as Socket
    this.welcomed = true
    this.attempt = 0
    this.lastErr = null
    this.grants = { receive, send }
    this.resubscribe(sock, receive)
    if (this.doneUpTo > this.ackedUpTo) this.flushAck()
    for (const p of this.pending.values()) writeLine(sock, p.msg)
    this.emit('connected', { service, peer, receive, send })
    this.readyCb.resolve()
  }

  /** Subscribe again to what we had; names no longer granted are dropped and reported. */
  private resubscribe (sock: Socket, receive: string[]): void {
    const granted = new Set(receive)
    const lost = [...this.handlers.keys()].filter((n) => !granted.has(n))
    for (const n of lost) this.handlers.delete(n)
    if (lost.length > 0) this.report(new ServiceError('NotGrantedError', 'not-granted', `no longer granted to receive ${lost.join(', ')}`))
    if (this.handlers.size === 0) return
    const id = this.nextId++
    this.resubs.set(id, (err) => { this.report(err) })
    writeLine(sock, { op: 'subscribe', id, names: [...this.handlers.keys()] })
  }

  // internal resubscribe requests: not replayed, since every welcome makes a new one
  private readonly resubs = new Map<number, (err: Error) => void>()

  private answer (id: unknown, fn: (p: Pending) => void): void {
    if (typeof id !== 'number') return
    if (this.resubs.delete(id)) return
    const p = this.pending.get(id)
    if (p === undefined) return
    this.pending.delete(id)
    fn(p)
  }

  private onError (id: unknown, err: ServiceError): void {
    const resub = typeof id === 'number' ? this.resubs.get(id) : undefined
    if (resub !== undefined) {
      this.resubs.delete(id as number)
      return resub(err)
    }
    if (typeof id === 'number' && this.pending.has(id)) return this.answer(id, (p) => { p.reject(err) })
    // a bad token (at hello, or revoked later) ends the client: retrying cannot help
    if (err.code === 'bad-token') {
      this.fatalErr = err
      return
    }
    this.report(err)
  }

  private report (err: Error): void {
    this.log?.warn({ err }, 'services socket error')
    if (this.listenerCount('error') > 0) this.emit('error', err)
  }

  private request (msg: Record<string, unknown>, handler?: EventHandler): Promise<any> {
    if (this.closing !== null || this.fatalErr !== null) return Promise.reject(this.fatalErr ?? closedError('client closed'))
    const id = this.nextId++
    const full = { ...msg, id }
    return new Promise((resolve, reject) => {
      this.pending.set(id, { msg: full, resolve, reject, handler })
      // not connected: sent in order after the next welcome
      if (this.welcomed && this.sock !== null) writeLine(this.sock, full)
    })
  }

  // ---- public calls ----

  async subscribe (names: string[], handler: EventHandler): Promise<string[]> {
    return await this.request({ op: 'subscribe', names }, handler)
  }

  async send (name: string, data: unknown, opts: SendOptions = {}): Promise<EventMeta> {
    const msg: Record<string, unknown> = { op: 'send', name, to: opts.to ?? '*', data, nonce: opts.nonce ?? randomUUID() }
    if (opts.ttl !== undefined) msg.ttl = opts.ttl
    return await this.request(msg)
  }

  async close (): Promise<void> {
    if (this.closing !== null) return await this.closing
    this.closing = (async () => {
      // events not yet handed over stay unacked and come again next time
      this.queue.length = 0
      await this.current?.catch(() => {})
      const sock = this.sock
      if (sock === null) return this.shutdown(closedError('client closed'))
      if (this.welcomed && this.doneUpTo > this.ackedUpTo) this.flushAck()
      const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()))
      sock.end()
      setTimeout(() => sock.destroy(), 1000).unref()
      await closed
    })()
    return await this.closing
  }

  // ---- events and acks ----

  private onEvent (ev: ServiceEvent): void {
    if (ev.id <= this.lastEventId) return
    this.queue.push(ev)
    if (!this.handling) void this.handleQueue()
  }

  /** One event at a time, in order; acked only after its handler settled. */
  private async handleQueue (): Promise<void> {
    this.handling = true
    try {
      let ev: ServiceEvent | undefined
      while ((ev = this.queue.shift()) !== undefined) {
        if (ev.id <= this.lastEventId) continue
        this.lastEventId = ev.id
        this.current = this.hand(ev)
        await this.current
        this.doneUpTo = ev.id
        this.scheduleAck()
      }
    } finally {
      this.handling = false
    }
  }

  private async hand (ev: ServiceEvent): Promise<void> {
    const handler = this.handlers.get(ev.name)
    if (handler === undefined) return
    try {
      await handler(ev)
    } catch (err) {
      // the event counts as handled: redelivering it would hand it over twice
      this.report(err instanceof Error ? err : new Error(String(err)))
    }
  }

  private scheduleAck (): void {
    if (++this.sinceAck >= ACK_EVERY) return this.flushAck()
    if (this.ackTimer === null) this.ackTimer = setTimeout(() => { this.ackTimer = null; this.flushAck() }, ACK_DELAY_MS)
  }

  private clearAckTimer (): void {
    if (this.ackTimer !== null) clearTimeout(this.ackTimer)
    this.ackTimer = null
  }

  private flushAck (): void {
    this.clearAckTimer()
    if (!this.welcomed || this.sock === null || this.doneUpTo <= this.ackedUpTo) return
    this.sinceAck = 0
    this.ackedUpTo = this.doneUpTo
    writeLine(this.sock, { op: 'ack', upTo: this.doneUpTo })
  }
}
