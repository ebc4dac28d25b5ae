import { createServer, type Server, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer, type WebSocket } from 'ws'
import type { HostPort } from '../config/index.js'
import { nowMs } from '../wire/envelope.js'

export interface PeerServerInit {
  listen: HostPort
  maxFrameBytes: number
}

export interface PeerServerComponents {
  onConnection: (ws: WebSocket, req: IncomingMessage) => void
}

/** The WebSocket endpoint other peers dial. */
export class PeerServer {
  private http: Server | null = null
  private wss: WebSocketServer | null = null

  constructor (private readonly init: PeerServerInit, private readonly c: PeerServerComponents) {}

  async start (): Promise<HostPort> {
    if (this.http !== null) return this.address()
    // x-center-time: this peer's clock in ms, for `centerctl doctor` on other boxes to measure skew
    const http = createServer((_req, res) => { res.writeHead(426, { 'content-type': 'text/plain', 'x-center-time': String(nowMs()) }).end('center peers speak WebSocket here\n') })
    const wss = new WebSocketServer({ server: http, maxPayload: this.init.maxFrameBytes, perMessageDeflate: false })
    wss.on('connection', (ws, req) => { this.c.onConnection(ws, req) })
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject)
      http.listen(this.init.listen.port, this.init.listen.host, () => { http.off('error', reject); resolve() })
    })
    this.http = http
    this.wss = wss
    return this.address()
  }

  address (): HostPort {
    const a = this.http?.address() as AddressInfo | null
    return { host: a?.address ?? this.init.listen.host, port: a?.port ?? this.init.listen.port }
  }

  async stop (): Promise<void> {
    const http = this.http
    const wss = this.wss
    if (http === null || wss === null) return
    this.http = null
    this.wss = null
    for (const ws of wss.clients) ws.terminate()
    await new Promise<void>((resolve) => wss.close(() => resolve()))
    await new Promise<void>((resolve) => http.close(() => resolve()))
  }
}
