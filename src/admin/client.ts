import { connect } from 'node:net'
import { CenterError, NotRunningError } from '../errors.js'
import { onLines, writeLine } from '../rpc/ndjson.js'

/** An error the daemon returned, re-raised on the client side with its name and code. */
export class RemoteError extends CenterError {
  override readonly code: string
  constructor (name: string, code: string, message: string) {
    super(message)
    this.name = name
    this.code = code
  }
}

/** One request over the admin socket. */
export async function callAdmin (socketPath: string, method: string, params: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<any> {
  return await new Promise((resolve, reject) => {
    const sock = connect(socketPath)
    const timer = setTimeout(() => { sock.destroy(); reject(new CenterError(`no answer from centerd within ${timeoutMs} ms`)) }, timeoutMs)
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      reject(err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
        ? new NotRunningError(`centerd is not running (no admin socket at ${socketPath})`)
        : err)
    })
    sock.on('connect', () => { writeLine(sock, { id: 1, method, params }) })
    onLines(sock, 64 * 1024 * 1024, (msg) => {
      clearTimeout(timer)
      sock.end()
      const m = msg as { result?: unknown, error?: { name: string, code: string, message: string } }
      if (m.error !== undefined) reject(new RemoteError(m.error.name, m.error.code, m.error.message))
      else resolve(m.result)
    }, (err) => { clearTimeout(timer); reject(err) })
  })
}
