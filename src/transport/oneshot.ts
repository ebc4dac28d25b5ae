import WebSocket from 'ws'
import { CenterError } from '../errors.js'
import { decodeFrame } from '../wire/frame.js'

/** A refusal the other peer sent back in an ERR frame. */
export class PeerRefusedError extends CenterError {
  override readonly code: string
  constructor (code: string, message: string) {
    super(message)
    this.name = 'PeerRefusedError'
    this.code = code
  }
}

export class PeerUnreachableError extends CenterError {
  override readonly code = 'unreachable'
  constructor (message: string, opts?: { cause?: unknown }) {
    super(message, opts)
    this.name = 'PeerUnreachableError'
  }
}

/**
 * Control frames (NEW, GPG) may go to a peer we have no link with: open a
 * connection, send one frame, wait for its OK or ERR, close.
 */
export async function sendOneShot (address: string, frame: Buffer, timeoutMs = 15_000): Promise<unknown> {
  return await new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${address}/center/v1`, { handshakeTimeout: timeoutMs, perMessageDeflate: false })
    const timer = setTimeout(() => { ws.terminate(); reject(new PeerUnreachableError(`no answer from ${address} within ${timeoutMs} ms`)) }, timeoutMs)
    const done = (fn: () => void): void => { clearTimeout(timer); ws.close(); fn() }
    ws.once('open', () => { ws.send(frame) })
    ws.once('message', (data: Buffer) => {
      try {
        const reply = decodeFrame(data)
        if (reply.kind === 'ok') done(() => resolve(reply.body))
        else if (reply.kind === 'err') done(() => reject(new PeerRefusedError(reply.body.code, `${address} refused: ${reply.body.message}`)))
        else done(() => reject(new PeerUnreachableError(`${address} answered with an unexpected ${reply.kind} frame`)))
      } catch (err) {
        done(() => reject(err))
      }
    })
    ws.once('error', (err) => { done(() => reject(new PeerUnreachableError(`cannot reach ${address}: ${err.message}`, { cause: err }))) })
    ws.once('close', (code, reason) => { done(() => reject(new PeerUnreachableError(`${address} closed the connection (${code} ${reason.toString()})`))) })
  })
}
