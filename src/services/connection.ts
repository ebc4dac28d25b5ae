import type { Socket } from 'node:net'
import { once } from 'node:events'
import { BadRequestError, BadTokenError, CenterError, NotFoundError, NotGrantedError, toWireError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { DispatcherApi, InboxEvent } from '../dispatcher/types.js'
import { writeLine } from '../rpc/ndjson.js'
import { nowSeconds, type Envelope } from '../wire/envelope.js'
import { readLines } from '../rpc/ndjson.js'
import { idOf, opOf, parseAck, parseHello, parseSend, parseSubscribe, type RequestId, type SendMsg, type ServerMsg, type SubscribeMsg } from './protocol.js'
import type { ServiceRecord, ServiceRegistry } from './registry.js'
import { SendQueue } from './send-queue.js'

export interface ConnectionInit {
  maxLine: number
  maxInflight: number
  /** how long a client may take to say hello */
  helloTimeoutMs: number
  /** how often acknowledged cursors are written to the database */
  ackFlushMs: number
  /** most inbox rows fetched per read */
  readBatch: number
}

export interface ConnectionComponents {
  logger: Logger
  registry: Pick<ServiceRegistry, 'authenticate' | 'get' | 'setDelivered'>
  dispatcher: DispatcherApi
}

type State = 'hello' | 'authenticating' | 'open' | 'closed'
type Obj = Record<string, unknown>

/**
 * One client of the services socket: authentication, grants, the delivery
 * cursor with flow control, acks and the send pipeline.
 */
export class ServiceConnection {
  service: string | null = null
  private state: State = 'hello'
  private early: unknown[] = []
  private changedDuringAuth = false
  private receive = new Set<string>()
  private sendable = new Set<string>()
  private readonly subscribed = new Set<string>()
  // bumped whenever what may be delivered changes, so a read in flight is redone
  private version = 0
  /** highest inbox id read (sent or skipped) */
  private cursor = 0
  private readonly unacked: number[] = []
  private unackedHead = 0
  private acked = 0
  private persisted = 0
  private ackTimer: NodeJS.Timeout | null = null
  private helloTimer: NodeJS.Timeout | null = null
  private pumping = false
  private again = false
  private readonly sends: SendQueue
  /** settles once the connection is closed and its cursor written */
  readonly closed: Promise<void>
  private resolveClosed!: () => void

  constructor (private readonly sock: Socket, private readonly init: ConnectionInit, private readonly c: ConnectionComponents) {
    this.closed = new Promise((resolve) => { this.resolveClosed = resolve })
    this.sends = new SendQueue({
      submit: async (events) => await c.dispatcher.submit(this.service as string, events),
      sent: (m, env) => { this.write({ op: 'sent', id: m.id, meta: env.meta }) },
      failed: (m, err) => { this.refuse(err, m.id, m.name) },
      isOpen: () => this.state === 'open'
    })
    sock.on('error', (err) => { c.logger.debug({ err, service: this.service }, 'service socket error') })
    sock.on('close', () => { void this.close() })
    this.helloTimer = setTimeout(() => {
      this.fatal(new BadRequestError(`no hello within ${init.helloTimeoutMs} ms`))
    }, init.helloTimeoutMs)
    readLines(sock, init.maxLine, {
      message: (msg) => { this.onMessage(msg) },
      invalid: (err) => { this.state === 'open' ? this.refuse(err) : this.fatal(err) },
      tooLarge: (err) => { this.fatal(err) }
    })
  }

  private write (msg: ServerMsg): boolean {
    return writeLine(this.sock, msg)
  }

  /** A refusal: answered, logged once, and the connection goes on. */
  private refuse (err: unknown, id?: RequestId, event?: string): void {
    const wire = toWireError(err)
    if (err instanceof CenterError) {
      this.c.logger.warn({ service: this.service, event, code: wire.code, reason: wire.message }, 'service request refused')
    } else {
      this.c.logger.error({ err, service: this.service, event }, 'service request failed')
    }
    this.write(id === undefined ? { op: 'error', error: wire } : { op: 'error', id, error: wire })
  }

  /** A refusal that ends the connection (bad token, pre-hello, oversized line). */
  private fatal (err: unknown, id?: RequestId): void {
    if (this.state === 'closed') return
    this.refuse(err, id)
    void this.close()
  }

  private onMessage (msg: unknown): void {
    if (this.state === 'closed') return
    if (this.state === 'authenticating') {
      this.early.push(msg)
      return
    }
    const op = opOf(msg)
    if (this.state === 'hello') {
      if (op !== 'hello') return this.fatal(new BadRequestError(`the first message must be hello, not ${JSON.stringify(op ?? null)}`), idOf(msg))
      void this.hello(msg as Obj)
      return
    }
    try {
      this.dispatch(op, msg as Obj)
    } catch (err) {
      this.refuse(err, idOf(msg), eventOf(msg))
    }
  }

  private dispatch (op: string | undefined, m: Obj): void {
    switch (op) {
      case 'subscribe': return this.subscribe(parseSubscribe(m))
      case 'ack': return this.ack(parseAck(m).upTo)
      case 'send': return this.send(parseSend(m))
      case 'hello': throw new BadRequestError('already said hello')
      default: throw new BadRequestError(`unknown op ${JSON.stringify(op ?? null)}`)
    }
  }

  private async hello (m: Obj): Promise<void> {
    this.state = 'authenticating'
    let rec: ServiceRecord
    let resumeAfter: number | undefined
    try {
      resumeAfter = parseHello(m).resumeAfter
      rec = await this.c.registry.authenticate(m.token)
    } catch (err) {
      this.state = 'hello'
      return this.fatal(err)
    }
    if (this.helloTimer !== null) clearTimeout(this.helloTimer)
    if ((this.state as State) === 'closed') return
    this.service = rec.name
    this.state = 'open'
    this.applyGrants(rec)
    this.cursor = Math.max(rec.delivered, resumeAfter ?? 0)
    this.acked = this.persisted = rec.delivered
    this.write({ op: 'welcome', service: rec.name, peer: this.c.dispatcher.uuid, receive: rec.receive, send: rec.send })
    this.c.logger.info({ service: rec.name, from: this.cursor }, 'service connected')
    const early = this.early
    this.early = []
    for (const msg of early) this.onMessage(msg)
    // a grant change that committed while we were authenticating
    if (this.changedDuringAuth) await this.refresh()
  }

  private applyGrants (rec: ServiceRecord): void {
    this.receive = new Set(rec.receive)
    this.sendable = new Set(rec.send)
    this.version++
  }

  private subscribe ({ id, names }: SubscribeMsg): void {
    const missing = names.filter((n) => !this.receive.has(n))
    if (missing.length > 0) {
      return this.refuse(new NotGrantedError(`service ${this.service} is not granted to receive ${missing.join(', ')}`), id, missing.join(','))
    }
    for (const n of names) this.subscribed.add(n)
    this.version++
    this.write({ op: 'subscribed', id, names })
    this.wake()
  }

  private send (m: SendMsg): void {
    if (!this.sendable.has(m.name)) {
      return this.refuse(new NotGrantedError(`service ${this.service} is not granted to send ${m.name}`), m.id, m.name)
    }
    this.sends.push(m)
  }

  // ---- delivery ----

  private inflight (): number {
    return this.unacked.length - this.unackedHead
  }

  private deliverable (): string[] {
    return [...this.subscribed].filter((n) => this.receive.has(n))
  }

  private ack (upTo: number): void {
    if (upTo > this.cursor) throw new BadRequestError(`ack upTo ${upTo} is beyond the last event sent (${this.cursor})`)
    const before = this.inflight()
    while (this.unackedHead < this.unacked.length && this.unacked[this.unackedHead] <= upTo) this.unackedHead++
    if (this.unackedHead > 1024) {
      this.unacked.splice(0, this.unackedHead)
      this.unackedHead = 0
    }
    this.acked = Math.max(this.acked, upTo)
    this.scheduleFlush()
    if (this.inflight() < before) this.wake()
  }

  /** New rows may be in the inbox (or room freed): read until caught up. One read in flight at a time. */
  wake (): void {
    if (this.state !== 'open') return
    if (this.pumping) {
      this.again = true
      return
    }
    this.pumping = true
    this.pump().catch((err) => {
      this.c.logger.error({ err, service: this.service }, 'service delivery failed')
      void this.close()
    }).finally(() => { this.pumping = false })
  }

  private async pump (): Promise<void> {
    do {
      this.again = false
      while (await this.readOnce());
    } while (this.again && this.state === 'open')
  }

  /** One read of the inbox; true if there may be more right away. */
  private async readOnce (): Promise<boolean> {
    const names = this.deliverable()
    const room = this.init.maxInflight - this.inflight()
    if (this.state !== 'open' || names.length === 0 || room <= 0) return false
    const version = this.version
    const limit = Math.min(room, this.init.readBatch)
    const rows = await this.c.dispatcher.readInbox(this.cursor, names, limit)
    if (this.version !== version) return true
    for (const row of rows) {
      if ((this.state as State) !== 'open') return false
      if (!this.deliver(row) && this.sock.writableNeedDrain) await this.drained()
      // names added while waiting for the socket: read again from here so none is skipped
      if (this.version !== version) return true
    }
    if (this.inflight() === 0) this.scheduleFlush()
    return rows.length === limit
  }

  private async drained (): Promise<void> {
    await Promise.race([once(this.sock, 'drain').catch(() => {}), this.closed])
  }

  /** Push one row; false if the socket asked us to wait. */
  private deliver (row: InboxEvent): boolean {
    if (row.id <= this.cursor) return true
    this.cursor = row.id
    const env: Envelope = row.envelope
    // the grant or subscription may have changed, and expired events are not worth handing out
    if (env.meta.exp <= nowSeconds() || !this.subscribed.has(env.name) || !this.receive.has(env.name)) return true
    this.unacked.push(row.id)
    return this.write({ op: 'event', id: row.id, name: env.name, meta: env.meta, data: env.data })
  }

  // ---- the acknowledged cursor ----

  /** Up to where the service is done: acked, or everything read if nothing is outstanding. */
  private doneUpTo (): number {
    return this.inflight() === 0 ? Math.max(this.acked, this.cursor) : this.acked
  }

  private scheduleFlush (): void {
    if (this.ackTimer !== null || this.doneUpTo() <= this.persisted) return
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null
      void this.flush()
    }, this.init.ackFlushMs)
  }

  private async flush (): Promise<void> {
    const target = this.doneUpTo()
    if (this.service === null || target <= this.persisted) return
    this.persisted = target
    try {
      await this.c.registry.setDelivered(this.service, target)
    } catch (err) {
      this.c.logger.error({ err, service: this.service }, 'could not save delivery cursor')
    }
  }

  // ---- grants changing under us ----

  /** The registry changed service `name`; apply it if it is ours. */
  changed (name: string): void {
    if (this.state === 'authenticating') this.changedDuringAuth = true
    if (this.state !== 'open' || this.service !== name) return
    this.refresh().catch((err) => { this.c.logger.error({ err, service: name }, 'could not refresh service grants') })
  }

  private async refresh (): Promise<void> {
    const rec = await this.c.registry.get(this.service as string).catch((err) => {
      if (err instanceof NotFoundError) return null
      throw err
    })
    if (this.state !== 'open') return
    if (rec === null || rec.state !== 'active') return this.fatal(new BadTokenError('token revoked'))
    this.applyGrants(rec)
    this.write({ op: 'grants', receive: rec.receive, send: rec.send })
    this.wake()
  }

  // ---- closing ----

  async close (): Promise<void> {
    if (this.state === 'closed') return await this.closed
    this.state = 'closed'
    if (this.helloTimer !== null) clearTimeout(this.helloTimer)
    if (this.ackTimer !== null) clearTimeout(this.ackTimer)
    this.ackTimer = null
    // end, not destroy: a refusal written just before must still reach the client
    this.sock.end()
    setTimeout(() => this.sock.destroy(), 1000).unref()
    await this.flush()
    if (this.service !== null) this.c.logger.info({ service: this.service }, 'service disconnected')
    this.resolveClosed()
  }

  /** Drop the connection at once (server shutdown). */
  async destroy (): Promise<void> {
    const done = this.close()
    this.sock.destroy()
    await done
  }
}

function eventOf (msg: unknown): string | undefined {
  const name = (msg as Obj | null)?.name
  return typeof name === 'string' ? name.slice(0, 64) : undefined
}
