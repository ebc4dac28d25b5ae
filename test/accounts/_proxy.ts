import { createServer, connect, type Server, type Socket } from 'node:net'

/**
 * A TCP relay in front of a peer (its advertised address), which the test
 * can cut and heal: a partition between processes on loopback. Cutting
 * drops every relayed connection and refuses new ones until healed.
 */
export class CutProxy {
  target = 0
  private cut = false
  private readonly socks = new Set<Socket>()
  private constructor (private readonly server: Server, readonly port: number) {}

  static async create (): Promise<CutProxy> {
    const server = createServer()
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port))
    })
    const p = new CutProxy(server, port)
    server.on('connection', (s) => { p.relay(s) })
    return p
  }

  private relay (s: Socket): void {
    if (this.cut || this.target === 0) { s.destroy(); return }
    const up = connect(this.target, '127.0.0.1')
    for (const x of [s, up]) {
      this.socks.add(x)
      x.on('close', () => { this.socks.delete(x); s.destroy(); up.destroy() })
      x.on('error', () => {})
    }
    s.pipe(up)
    up.pipe(s)
  }

  partition (): void {
    this.cut = true
    for (const s of this.socks) s.destroy()
  }

  heal (): void { this.cut = false }

  async close (): Promise<void> {
    this.partition()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}
