import { existsSync } from 'node:fs'
import { stat, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import type { Command } from 'commander'
import pg from 'pg'
import { callAdmin } from '../../admin/client.js'
import type { Config } from '../../config/index.js'
import { identityDir } from '../../identity/files.js'
import { run, systemdRunning } from '../../systemd/run.js'
import type { CliContext } from '../index.js'
import { check, type Check, type CheckStatus } from '../../health/check.js'
import { clockSkewCheck, readPeerClocks } from '../../health/clock.js'
import { ldapCheck } from '../../health/ldap.js'
import { quotaCheck } from '../../health/quota.js'

export type { Check, CheckStatus }

const DISK_FAIL_PERCENT = 5
const DISK_WARN_PERCENT = 10
const ADMIN_TIMEOUT_MS = 5_000

export function registerDoctorCommand (program: Command, ctx: CliContext): void {
  program.command('doctor')
    .description('check this peer: config, daemon, database, peers, clock, disk, quota, LDAP; exits 1 on any failure')
    .action(async () => {
      const checks = await runChecks(ctx)
      ctx.out.print(render(checks), checks)
      if (checks.some((c) => !c.ok)) process.exitCode = 1
    })
}

function render (checks: Check[]): string {
  const mark: Record<CheckStatus, string> = { ok: 'ok', warn: 'WARN', fail: 'FAIL', skip: '-' }
  const width = Math.max(...checks.map((c) => c.check.length))
  const lines = checks.flatMap((c) => [
    `${mark[c.status].padEnd(4)}  ${c.check.padEnd(width)}  ${c.detail}`,
    ...(c.fix === null ? [] : [`${' '.repeat(width + 8)}fix: ${c.fix}`])
  ])
  const failed = checks.filter((c) => !c.ok).length
  return [...lines, '', failed === 0 ? 'no failures' : `${failed} failure(s)`].join('\n')
}

/** Every check, in order; later ones are skipped when what they need is missing. */
export async function runChecks (ctx: CliContext): Promise<Check[]> {
  let cfg: Config
  try {
    cfg = ctx.config()
  } catch (err) {
    return [check('config', 'fail', (err as Error).message, `edit ${ctx.configPath() ?? '/etc/center/center.toml'}, or create it with \`centerctl init\``)]
  }
  const checks: Check[] = [check('config', 'ok', cfg.configPath ?? 'no config file: embedded defaults and CENTER_* variables')]
  checks.push(await identityCheck(cfg))
  const { check: daemon, status } = await daemonCheck(cfg)
  checks.push(daemon)
  checks.push(await databaseCheck(cfg, status))
  const peers = peersOf(status)
  checks.push(...peerChecks(peers))
  checks.push(...await clockChecks(cfg, peers))
  checks.push(await diskCheck(cfg.stateDir))
  checks.push(await quotaCheck(cfg.center))
  checks.push(await ldapCheck(cfg.ldap))
  if (systemdRunning()) checks.push(await unitCheck())
  return checks
}

// ---- identity and daemon ----------------------------------------------------

async function identityCheck (cfg: Config): Promise<Check> {
  const dir = identityDir(cfg.stateDir)
  if (!existsSync(join(dir, 'uuid'))) return check('identity', 'fail', `no identity in ${dir}`, 'centerctl init --domain DOMAIN --admin USER (or restore a backup: centerctl restore FILE)')
  const loose: string[] = []
  for (const f of ['openpgp.key', 'signal.json']) {
    const st = await stat(join(dir, f)).catch(() => null)
    if (st === null) return check('identity', 'fail', `${join(dir, f)} is missing`, 'restore it from a backup (centerctl restore FILE)')
    if ((st.mode & 0o077) !== 0) loose.push(`${f} is ${(st.mode & 0o777).toString(8)}`)
  }
  if (loose.length > 0) return check('identity', 'fail', `private keys readable by others: ${loose.join(', ')}`, `chmod 600 ${dir}/openpgp.key ${dir}/signal.json`)
  return check('identity', 'ok', `${dir} (private keys 0600)`)
}

type Status = Record<string, any> | null

async function daemonCheck (cfg: Config): Promise<{ check: Check, status: Status }> {
  try {
    const s = await callAdmin(cfg.admin.socket, 'status', {}, ADMIN_TIMEOUT_MS)
    return { check: check('daemon', 'ok', `centerd up ${String(s.uptimeSeconds)} s, peer ${String(s.uuid)} at ${String(s.address)}`), status: s }
  } catch (err) {
    return { check: check('daemon', 'fail', (err as Error).message, 'systemctl start centerd; then journalctl -u centerd -e for why it stopped'), status: null }
  }
}

// ---- database ---------------------------------------------------------------

async function databaseCheck (cfg: Config, status: Status): Promise<Check> {
  if (cfg.database.url === null) return pgliteCheck(cfg, status)
  const url = new URL(cfg.database.url)
  const where = `${url.username === '' ? '' : `${decodeURIComponent(url.username)}@`}${url.searchParams.get('host') ?? url.host}${url.pathname}`
  const direct = await pgPing(cfg.database.url)
  if (direct === null) return check('database', 'ok', `PostgreSQL ${where} answers`)
  // peer authentication: root is not the role; ask as the account centerd runs as
  const role = decodeURIComponent(url.username)
  if (process.getuid?.() === 0 && role !== '' && role !== 'root' && url.password === '') {
    const r = await run('runuser', ['-u', role, '--', 'psql', '-XAtq', cfg.database.url, '-c', 'select 1'])
    if (r.code === 0) return check('database', 'ok', `PostgreSQL ${where} answers (as ${role})`)
  }
  return check('database', 'fail', `PostgreSQL ${where}: ${direct}`, 'systemctl status postgresql; create the role and database with `centerctl setup postgres`')
}

async function pgPing (url: string): Promise<string | null> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  try {
    await c.connect()
    await c.query('select 1')
    return null
  } catch (err) {
    return (err as Error).message
  } finally {
    await c.end().catch(() => {})
  }
}

async function pgliteCheck (cfg: Config, status: Status): Promise<Check> {
  const dir = cfg.database.pgliteDir
  // never open PGlite here: the running daemon holds it, and two writers corrupt it
  if (status !== null) return check('database', 'ok', `embedded PGlite in ${dir}, open in the running daemon`)
  if (!existsSync(dir)) return check('database', 'warn', `embedded PGlite in ${dir}: not created yet`, 'it is created when centerd first starts')
  if (!existsSync(join(dir, 'PG_VERSION'))) return check('database', 'fail', `${dir} exists but holds no PostgreSQL data directory`, `move ${dir} aside and restore a backup (centerctl restore FILE)`)
  return check('database', 'ok', `embedded PGlite in ${dir} (daemon stopped)`)
}

// ---- peers and clocks -------------------------------------------------------

interface PeerRow { uuid: string, domain: string, address: string, state: string, connection: string, lastError: string | null, outbox: number, clockOffsetSeconds?: number | null }

function peersOf (status: Status): PeerRow[] | null {
  return status === null ? null : (status.peers as PeerRow[]).filter((p) => p.state === 'active')
}

function peerChecks (peers: PeerRow[] | null): Check[] {
  if (peers === null) return [check('peers', 'skip', 'not checked: the daemon is not reachable')]
  if (peers.length === 0) return [check('peers', 'warn', 'no peers yet', 'join one: centerctl peer join … (see docs/admin/install.md)')]
  return peers.map((p) => p.connection === 'open'
    ? check(`peer ${p.domain}`, 'ok', `connected to ${p.address} (${p.uuid}), ${p.outbox} queued`)
    : check(`peer ${p.domain}`, 'fail', `${p.connection} to ${p.address} (${p.uuid}): ${p.lastError ?? 'no connection'}; ${p.outbox} events queued`,
      `check that ${p.address} is reachable from here (nc -vz ${hostPort(p.address)}) and that centerd runs there; then centerctl peer ping ${p.uuid}`))
}

const hostPort = (a: string): string => a.replace(/^\[(.*)\]:(\d+)$/, '$1 $2').replace(/^([^[\]:]*):(\d+)$/, '$1 $2')

async function clockChecks (cfg: Config, peers: PeerRow[] | null): Promise<Check[]> {
  const out: Check[] = []
  if (systemdRunning()) {
    const r = await run('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'])
    out.push(r.stdout.trim() === 'yes'
      ? check('clock', 'ok', 'system clock is NTP-synchronised')
      : check('clock', 'warn', `system clock is not NTP-synchronised; peers refuse events more than ${cfg.limits.clockSkewSeconds} s off`, 'apt-get install systemd-timesyncd (or chrony) and timedatectl set-ntp true'))
  }
  if (peers === null) {
    out.push(check('clock skew', 'skip', 'not checked: the daemon is not reachable'))
    return out
  }
  // every admitted peer, connected or not: a skewed clock is one reason a link stays down
  out.push(clockSkewCheck(await readPeerClocks(peers), cfg.limits.clockSkewSeconds))
  return out
}

// ---- disk, quota, unit ------------------------------------------------------

async function diskCheck (stateDir: string): Promise<Check> {
  let dir = stateDir
  while (!existsSync(dir) && dir !== '/') dir = join(dir, '..')
  const s = await statfs(dir)
  const free = (s.bavail / s.blocks) * 100
  const detail = `${free.toFixed(1)}% free (${((s.bavail * s.bsize) / 2 ** 30).toFixed(1)} GiB) on the file system of ${stateDir}`
  if (free < DISK_FAIL_PERCENT) return check('disk', 'fail', detail, `free space under ${dir}: the database and outbox grow there (journalctl --vacuum-size=…, apt-get clean)`)
  if (free < DISK_WARN_PERCENT) return check('disk', 'warn', detail, `free space under ${dir} soon`)
  return check('disk', 'ok', detail)
}

async function unitCheck (): Promise<Check> {
  const enabled = (await run('systemctl', ['is-enabled', 'centerd.service'])).stdout.trim()
  if (enabled === 'enabled') return check('unit', 'ok', 'centerd.service is enabled (starts at boot)')
  return check('unit', 'warn', `centerd.service is ${enabled === '' ? 'not installed' : enabled}`, 'centerctl setup units && systemctl enable --now centerd')
}
