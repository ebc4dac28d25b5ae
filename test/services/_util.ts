import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { Database } from '../../src/db/index.js'
import { createRootLogger, type Logger } from '../../src/logger.js'
import { ServiceRegistry } from '../../src/services/registry.js'
import { ServiceServer, type ServiceServerInit } from '../../src/services/server.js'
import { TestDispatcher } from './_dispatcher.js'

const PG_ROOT = process.env.CENTER_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

export interface LogLine { level: number, msg: string, [k: string]: unknown }

/** A pino logger writing into an array, so tests can count log lines. */
export function memoryLogger (): { logger: Logger, lines: LogLine[] } {
  const lines: LogLine[] = []
  const logger = createRootLogger({ level: 'debug', destination: { write: (s: string) => { lines.push(JSON.parse(s)) } } })
  return { logger, lines }
}

/** A throwaway database on the machine's PostgreSQL, migrated. */
export async function createTestDb (logger: Logger): Promise<{ database: Database, drop: () => Promise<void> }> {
  const name = `svc_test_${randomBytes(6).toString('hex')}`
  const admin = async (q: string): Promise<void> => {
    const c = new pg.Client({ connectionString: PG_ROOT })
    await c.connect()
    try { await c.query(q) } finally { await c.end() }
  }
  await admin(`CREATE DATABASE ${name}`)
  const url = new URL(PG_ROOT)
  url.pathname = `/${name}`
  const database = Database.open({ url: url.toString(), pgliteDir: '' }, { logger })
  await database.migrateToLatestOrThrow()
  return {
    database,
    drop: async () => {
      await database.close()
      await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    }
  }
}

export interface Fixture {
  database: Database
  dispatcher: TestDispatcher
  registry: ServiceRegistry
  server: ServiceServer
  socket: string
  logs: LogLine[]
  close: () => Promise<void>
}

export async function createFixture (init: Partial<ServiceServerInit> = {}): Promise<Fixture> {
  const { logger, lines } = memoryLogger()
  const { database, drop } = await createTestDb(logger)
  const dispatcher = new TestDispatcher(database.db)
  const registry = new ServiceRegistry({}, { db: database.db, dispatcher })
  const dir = await mkdtemp(join(tmpdir(), 'center-svc-'))
  const socket = join(dir, 'services.sock')
  const server = new ServiceServer({ socket, ...init }, { logger, registry, dispatcher })
  await server.start()
  return {
    database,
    dispatcher,
    registry,
    server,
    socket,
    logs: lines,
    close: async () => {
      await server.stop()
      await drop()
      await rm(dir, { recursive: true, force: true })
    }
  }
}

/** Warn lines logged for refusals with this code. */
export function refusals (logs: LogLine[], code: string): LogLine[] {
  return logs.filter((l) => l.code === code)
}

export async function waitFor (pred: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!(await pred())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

export const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

type Msg = Record<string, any>

/** A raw NDJSON client, to test the protocol itself. */
export class RawClient {
  readonly sock: Socket
  readonly received: Msg[] = []
  private consumed = 0
  readonly closed: Promise<void>
  private buf = ''

  constructor (path: string) {
    this.sock = connect(path)
    this.sock.setEncoding('utf8')
    this.sock.on('error', () => {})
    this.sock.on('data', (chunk: string) => {
      this.buf += chunk
      let nl: number
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        this.received.push(JSON.parse(this.buf.slice(0, nl)))
        this.buf = this.buf.slice(nl + 1)
      }
    })
    this.closed = new Promise((resolve) => this.sock.on('close', () => resolve()))
  }

  static async hello (path: string, token: string, resumeAfter?: number): Promise<RawClient> {
    const c = new RawClient(path)
    c.write({ op: 'hello', token, resumeAfter })
    const w = await c.next()
    if (w.op !== 'welcome') throw new Error(`expected welcome, got ${JSON.stringify(w)}`)
    return c
  }

  write (msg: unknown): void {
    this.sock.write(JSON.stringify(msg) + '\n')
  }

  /** The next message not yet consumed (optionally: the next one matching). */
  async next (pred: (m: Msg) => boolean = () => true, timeoutMs = 3000): Promise<Msg> {
    const until = Date.now() + timeoutMs
    for (;;) {
      for (let i = this.consumed; i < this.received.length; i++) {
        if (pred(this.received[i])) {
          const m = this.received[i]
          this.received.splice(i, 1)
          return m
        }
      }
      if (Date.now() > until) throw new Error(`no matching message; got ${JSON.stringify(this.received.slice(-3))}`)
      await sleep(5)
    }
  }

  async isClosed (timeoutMs = 2000): Promise<boolean> {
    return await Promise.race([this.closed.then(() => true), sleep(timeoutMs).then(() => false)])
  }

  end (): void {
    this.sock.destroy()
  }
}
