import type { Server, Socket } from 'node:net'
import { rm } from 'node:fs/promises'
import { BadRequestError, toWireError, CenterError } from '../errors.js'
import type { Logger } from '../logger.js'
import { listenUnix, onLines, writeLine } from '../rpc/ndjson.js'

export type AdminMethod = (params: Record<string, unknown>) => Promise<unknown>
export type AdminMethods = Record<string, AdminMethod>

export interface AdminServerInit { socket: string }
export interface AdminServerComponents { logger: Logger, methods: AdminMethods }

/**
 * The sysadmin's socket (mode 0600): `centerctl` sends `{id, method, params}`
 * lines and gets `{id, result}` or `{id, error:{name, code, message}}` back.
 */
export class AdminServer {
  private server: Server | null = null
  private readonly sockets = new Set<Socket>()

  constructor (private readonly init: AdminServerInit, private readonly c: AdminServerComponents) {}

  async start (): Promise<void> {
    if (this.server !== null) return
    this.server = await listenUnix(this.init.socket, 0o600, (sock) => { this.accept(sock) })
  }

  private accept (sock: Socket): void {
    this.sockets.add(sock)
    sock.on('close', () => this.sockets.delete(sock))
    sock.on('error', () => {})
    onLines(sock, 1024 * 1024, (msg) => { void this.call(sock, msg) }, (err) => { writeLine(sock, { id: null, error: toWireError(err) }) })
  }

  private async call (sock: Socket, msg: unknown): Promise<void> {
    const req = msg as { id?: unknown, method?: unknown, params?: unknown }
    const id = req?.id ?? null
    try {
      const fn = typeof req?.method === 'string' && Object.hasOwn(this.c.methods, req.method) ? this.c.methods[req.method] : undefined
      if (fn === undefined) throw new BadRequestError(`unknown admin method ${JSON.stringify(req?.method)}`)
      const params = (typeof req.params === 'object' && req.params !== null ? req.params : {}) as Record<string, unknown>
      writeLine(sock, { id, result: await fn(params) ?? null })
    } catch (err) {
      if (!(err instanceof CenterError)) this.c.logger.error({ err, method: req?.method }, 'admin method failed')
      writeLine(sock, { id, error: toWireError(err) })
    }
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server === null) return
    this.server = null
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    await rm(this.init.socket, { force: true })
  }
}
