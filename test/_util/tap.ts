import type WebSocket from 'ws'
import type { InProcessPeer } from './inproc.js'

export interface HeldFrame { data: Buffer, release: () => void }

/**
 * Stands between an in-process peer's real link and its socket, to play a
 * misbehaving peer: hold the next outgoing frame, send altered bytes, replay.
 * Only tests use it: the daemon itself never sends such frames.
 */
export function tapLink (p: InProcessPeer, peer: string): { holdNext: () => Promise<HeldFrame>, sendRaw: (b: Buffer) => void, restore: () => void } {
  const link = p.daemon.ctx.links.get(peer)
  const ws = (link as unknown as { ws: WebSocket | null }).ws
  if (ws === null || ws === undefined) throw new Error('link is not connected')
  const original = ws.send.bind(ws) as (data: Buffer, cb?: (err?: Error) => void) => void
  let waiter: ((f: HeldFrame) => void) | null = null
  ;(ws as any).send = (data: Buffer, cb?: (err?: Error) => void) => {
    if (waiter === null) { original(data, cb); return }
    const w = waiter
    waiter = null
    w({ data: Buffer.from(data), release: () => { original(data, cb) } })
  }
  return {
    holdNext: async () => await new Promise<HeldFrame>((resolve) => { waiter = resolve }),
    sendRaw: (b) => { original(b) },
    restore: () => { (ws as any).send = original }
  }
}
