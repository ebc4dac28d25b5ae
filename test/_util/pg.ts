import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { aptInstall } from './apt.js'

/**
 * Real PostgreSQL for tests. Uses the server this machine kind runs
 * (127.0.0.1:5432, trust auth); if there is none, starts the Debian cluster,
 * and failing that, a throwaway cluster of our own (installing PostgreSQL
 * when running as root and it is missing).
 */
const DEFAULT_URL = process.env.CENTER_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
let adminUrl: Promise<string> | null = null
/** the directory of the server's Unix socket, when we know it (a throwaway cluster of ours puts it in its own) */
let socketDir: string | null = null

async function reachable (url: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 })
  try {
    await c.connect()
    await c.query('select 1')
    return true
  } catch {
    return false
  } finally {
    await c.end().catch(() => {})
  }
}

function pgBin (): string | null {
  const base = '/usr/lib/postgresql'
  if (!existsSync(base)) return null
  const v = readdirSync(base).sort((a, b) => Number(b) - Number(a))[0]
  return v === undefined ? null : join(base, v, 'bin')
}

function startDebianCluster (): void {
  if (!existsSync('/etc/postgresql')) return
  for (const v of readdirSync('/etc/postgresql')) spawnSync('pg_ctlcluster', ['--skip-systemctl-redirect', v, 'main', 'start'], { stdio: 'ignore' })
}

function throwawayCluster (): string {
  if (pgBin() === null) aptInstall(['postgresql'])
  const bin = pgBin()
  if (bin === null) throw new Error('PostgreSQL is not installed and could not be installed (run the tests as root, or set CENTER_TEST_PG_URL)')
  const dir = mkdtempSync(join(tmpdir(), 'center-pg-'))
  chmodSync(dir, 0o777)
  const asPg = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : []
  const run = (cmd: string[]): void => { execFileSync(asPg[0] ?? cmd[0] as string, [...asPg.slice(1), ...(asPg.length > 0 ? cmd : cmd.slice(1))], { stdio: 'ignore' }) }
  run([join(bin, 'initdb'), '-D', join(dir, 'data'), '--auth=trust', '-U', 'postgres'])
  run([join(bin, 'pg_ctl'), '-D', join(dir, 'data'), '-w', '-l', join(dir, 'log'), '-o', `-p 55432 -c listen_addresses=127.0.0.1 -k ${dir}`, 'start'])
  socketDir = dir
  return 'postgres://postgres@127.0.0.1:55432/postgres'
}

export async function ensurePostgres (): Promise<string> {
  adminUrl ??= (async () => {
    if (await reachable(DEFAULT_URL)) return DEFAULT_URL
    startDebianCluster()
    if (await reachable(DEFAULT_URL)) return DEFAULT_URL
    const url = throwawayCluster()
    if (await reachable(url)) return url
    throw new Error('no PostgreSQL reachable for the tests')
  })()
  return await adminUrl
}

/**
 * The same server through its Unix socket, or null. A peer in a network
 * namespace cannot reach the host's 127.0.0.1, but the socket is a file.
 */
function socketUrlFor (admin: string, database: string): string | null {
  const u = new URL(admin)
  const port = u.port === '' ? '5432' : u.port
  const dirs = socketDir !== null ? [socketDir] : ['/var/run/postgresql', '/tmp']
  const dir = dirs.find((d) => existsSync(join(d, `.s.PGSQL.${port}`)))
  if (dir === undefined || !['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) return null
  // what pg (pg-connection-string) and libpq both read: ?host=/dir wins over
  // the URL's host, which is there so that the URL also parses as a URL (the
  // form `centerctl setup` writes)
  return `postgresql://${u.username === '' ? 'postgres' : u.username}@localhost/${database}?host=${encodeURIComponent(dir)}&port=${port}`
}

/**
 * A fresh database for one peer; dropped by the returned function.
 * `socketUrl` reaches it through the server's Unix socket (null when there is none).
 */
export async function createTestDatabase (prefix = 'center_test'): Promise<{ url: string, socketUrl: string | null, drop: () => Promise<void> }> {
  const admin = await ensurePostgres()
  const name = `${prefix.toLowerCase().replace(/[^a-z0-9_]/g, '_')}_${randomBytes(5).toString('hex')}`
  const c = new pg.Client({ connectionString: admin })
  await c.connect()
  try {
    await c.query(`CREATE DATABASE ${name}`)
  } finally {
    await c.end()
  }
  const u = new URL(admin)
  u.pathname = `/${name}`
  return {
    url: u.toString(),
    socketUrl: socketUrlFor(admin, name),
    drop: async () => {
      const d = new pg.Client({ connectionString: admin })
      await d.connect()
      try {
        await d.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      } finally {
        await d.end()
      }
    }
  }
}
