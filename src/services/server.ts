import type { Server, Socket } from 'node:net'
import { rm } from 'node:fs/promises'
import type { Logger } from '../logger.js'
import type { DispatcherApi } from '../dispatcher/types.js'
import { listenUnix } from '../rpc/ndjson.js'
import { ServiceConnection } from './connection.js'
import type { ServiceRegistry } from './registry.js'

export interface ServiceServerInit {
  /** path of the Unix socket services connect to */
  socket: string
  /** longest request line in bytes; a longer one closes the connection; @default 1 MiB */
  maxLine?: number
  /** most events sent and not yet acknowledged, per connection; @default 4096 */
  maxInflight?: number
  /** how long a client may take to authenticate; @default 10 000 ms */
  helloTimeoutMs?: number
  /** how often acknowledged cursors are written to the database; @default 50 ms */
  ackFlushMs?: number
  /** most inbox rows fetched per read; @default 512 */
  readBatch?: number
}

export interface ServiceServerComponents {
  logger: Logger
  registry: ServiceRegistry
  dispatcher: DispatcherApi
}

export const DEFAULT_MAX_LINE = 1024 * 1024
export const DEFAULT_MAX_INFLIGHT = 4096
export const DEFAULT_HELLO_TIMEOUT_MS = 10_000
export const DEFAULT_ACK_FLUSH_MS = 50
export const DEFAULT_READ_BATCH = 512

/**
 * The local services socket (mode 0660: the group decides who may connect,
 * the token decides which service it is). Protocol: docs/sdk.md.
 */
export class ServiceServer {
  private server: Server | null = null
  private readonly conns = new Set<ServiceConnection>()
  private unInbox: (() => void) | null = null
  private readonly onChanged = (name: string): void => {
    for (const conn of this.conns) conn.changed(name)
  }

  constructor (private readonly init: ServiceServerInit, private readonly c: ServiceServerComponents) {}

  get connections (): number {
    return this.conns.size
  }

  async start (): Promise<void> {
    if (this.server !== null) return
    this.server = await listenUnix(this.init.socket, 0o660, (sock) => { this.accept(sock) })
    this.c.registry.on('changed', this.onChanged)
    this.unInbox = this.c.dispatcher.onInbox(() => {
      for (const conn of this.conns) conn.wake()
    })
    this.c.logger.info({ socket: this.init.socket }, 'services socket listening')
  }

  private accept (sock: Socket): void {
    const conn = new ServiceConnection(sock, {
      maxLine: this.init.maxLine ?? DEFAULT_MAX_LINE,
      maxInflight: this.init.maxInflight ?? DEFAULT_MAX_INFLIGHT,
      helloTimeoutMs: this.init.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS,
      ackFlushMs: this.init.ackFlushMs ?? DEFAULT_ACK_FLUSH_MS,
      readBatch: this.init.readBatch ?? DEFAULT_READ_BATCH
    }, this.c)
    this.conns.add(conn)
    void conn.closed.then(() => this.conns.delete(conn))
  }

  /** Close every connection (saving its cursor), then the socket. */
  async stop (): Promise<void> {
    const server = this.server
    if (server === null) return
    this.server = null
    this.c.registry.off('changed', this.onChanged)
    this.unInbox?.()
    this.unInbox = null
    const closing = new Promise<void>((resolve) => server.close(() => resolve()))
    await Promise.all([...this.conns].map(async (conn) => await conn.destroy()))
    await closing
    await rm(this.init.socket, { force: true })
    this.c.logger.info({ socket: this.init.socket }, 'services socket closed')
  }
}
