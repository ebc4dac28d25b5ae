import { createServer, type Server, type Socket } from 'node:net'
import { chmod, rm } from 'node:fs/promises'
import { FrameTooLargeError, InvalidJsonError, type CenterError } from '../errors.js'

const NL = 0x0a

export interface LineHandlers {
  message: (msg: unknown) => void
  /** a line that is not JSON: the stream stays in sync, so the caller may go on */
  invalid: (err: CenterError) => void
  /** a line over the limit: reading stops, the caller must close */
  tooLarge: (err: CenterError) => void
}

/**
 * Newline-delimited JSON over a stream socket: the framing of both local
 * sockets. Bytes are counted and every line is checked, including one that
 * arrives whole in a single chunk, so `maxLine` is a real bound and a client
 * cannot make us buffer without bound.
 */
export function readLines (sock: Socket, maxLine: number, h: LineHandlers): void {
  let parts: Buffer[] = []
  let pending = 0
  let stopped = false
  const onData = (chunk: Buffer): void => {
    let start = 0
    let nl: number
    while (!stopped && (nl = chunk.indexOf(NL, start)) >= 0) {
      const piece = chunk.subarray(start, nl)
      start = nl + 1
      const size = pending + piece.length
      const line = parts.length === 0 ? piece : Buffer.concat([...parts, piece], size)
      parts = []
      pending = 0
      if (size > maxLine) return tooLarge(size)
      emitLine(line)
    }
    if (stopped) return
    const rest = chunk.subarray(start)
    if (rest.length === 0) return
    pending += rest.length
    if (pending > maxLine) return tooLarge(pending)
    parts.push(rest)
  }
  const tooLarge = (size: number): void => {
    stopped = true
    parts = []
    sock.off('data', onData)
    h.tooLarge(new FrameTooLargeError(`line of ${size}+ bytes is longer than the limit of ${maxLine} bytes`))
  }
  const emitLine = (line: Buffer): void => {
    const text = line.toString('utf8').trim()
    if (text === '') return
    let msg: unknown
    try {
      msg = JSON.parse(text)
    } catch (err) {
      h.invalid(new InvalidJsonError(`line is not valid JSON: ${(err as Error).message}`))
      return
    }
    h.message(msg)
  }
  sock.on('data', onData)
}

/** The same, for callers that treat both refusals alike: a line over the limit also closes the socket. */
export function onLines (sock: Socket, maxLine: number, handle: (msg: unknown) => void, onBad: (err: Error) => void): void {
  readLines(sock, maxLine, {
    message: handle,
    invalid: onBad,
    tooLarge: (err) => { onBad(err); sock.destroy() }
  })
}

export function writeLine (sock: Socket, msg: unknown): boolean {
  if (sock.destroyed) return false
  return sock.write(JSON.stringify(msg) + '\n')
}

/**
 * Listen on a Unix socket path with `mode`: a stale socket file from a crash
 * is removed first, and the server is closed again if the mode cannot be set.
 */
export async function listenUnix (path: string, mode: number, onConnection: (sock: Socket) => void): Promise<Server> {
  await rm(path, { force: true })
  const server = createServer(onConnection)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => { server.off('error', reject); resolve() })
  })
  try {
    await chmod(path, mode)
  } catch (err) {
    server.close()
    throw err
  }
  return server
}
