import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { mkdtempSync, openSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { freePort, waitFor } from './wait.js'
import { createTestDatabase } from './pg.js'
import type { NetnsPlacement } from './netns.js'

const run = promisify(execFile)
/** dist/test/_util → repository root */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
export const CENTERD = join(ROOT, 'dist/src/bin/centerd.js')
export const CENTERCTL = join(ROOT, 'dist/src/bin/centerctl.js')

export interface PeerOptions {
  name: string
  /** embedded PGlite instead of a PostgreSQL database */
  embedded?: boolean
  /** extra TOML appended to the config */
  extraToml?: string
  /** advertise a different address (a proxy in front of us) */
  advertisePort?: number
  /** extra lines for the [peer] section, e.g. 'greeting = "auto"' */
  peerToml?: string
  /**
   * Run inside this network namespace host (test/_util/netns.ts): centerd is
   * started with `ip netns exec`, listens and advertises on the host's
   * address, and reaches PostgreSQL through its Unix socket. centerctl stays
   * on the machine: the admin socket is a file.
   */
  netns?: NetnsPlacement
}

/** the port peers in namespaces listen on: each namespace has its own */
export const NETNS_PORT = 7700

/** One centerd process with its own config, keys and database. */
export class PeerProcess {
  proc: ChildProcess | null = null
  uuid = ''
  private dropDb: (() => Promise<void>) | null = null

  private host: string

  private constructor (readonly name: string, readonly dir: string, readonly configPath: string, readonly port: number, private readonly netns: PeerOptions['netns']) {
    this.host = netns === undefined ? '127.0.0.1' : netns.net.host(netns.host).ip
  }

  static async create (o: PeerOptions): Promise<PeerProcess> {
    const dir = mkdtempSync(join(tmpdir(), `center-${o.name}-`))
    const port = o.netns === undefined ? await freePort() : NETNS_PORT
    const db = o.embedded === true ? null : await createTestDatabase(`center_${o.name}`)
    const peer = new PeerProcess(o.name, dir, join(dir, 'center.toml'), port, o.netns)
    peer.dropDb = db?.drop ?? null
    const args = ['init', '--domain', `${o.name}.center.test`, '--admin', 'root', '--listen', peer.address]
    if (o.advertisePort !== undefined) args.push('--advertise', `${peer.host}:${o.advertisePort}`)
    if (db !== null) {
      if (o.netns !== undefined && db.socketUrl === null) throw new Error('a peer in a network namespace needs PostgreSQL on a Unix socket, and none was found')
      // the Unix socket when there is one, as `centerctl setup` configures a
      // box; CENTER_TEST_PG=tcp keeps loopback TCP (a comparison)
      const tcp = o.netns === undefined && (process.env.CENTER_TEST_PG === 'tcp' || db.socketUrl === null)
      args.push('--database-url', tcp ? db.url : db.socketUrl as string)
    }
    await peer.ctl(...args)
    const toml = readFileSync(peer.configPath, 'utf8').replace('[peer]\n', `[peer]\n${o.peerToml ?? ''}\n`) + `\n[log]\nlevel = "${process.env.CENTER_TEST_LOG_LEVEL ?? 'debug'}"\n[metrics]\nlisten = "127.0.0.1:0"\n` + (o.extraToml ?? '')
    writeFileSync(peer.configPath, toml)
    peer.uuid = (await peer.ctl('whoami')).uuid
    return peer
  }

  get address (): string { return `${this.host}:${this.port}` }

  /**
   * Listen (and advertise) on another address of our host from the next
   * start: a peer that moved. Only the [peer] listen line changes.
   */
  moveTo (host: string): void {
    const toml = readFileSync(this.configPath, 'utf8')
    const next = toml.replace(/^listen = ".*"$/m, `listen = "${host}:${this.port}"`)
    if (next === toml) throw new Error(`no [peer] listen line in ${this.configPath}`)
    writeFileSync(this.configPath, next)
    this.host = host
  }

  get stateDir (): string { return this.dir }
  get logPath (): string { return join(this.dir, 'centerd.log') }
  get servicesSocket (): string { return join(this.dir, 'services.sock') }

  async start (): Promise<void> {
    if (this.proc !== null) return
    const out = openSync(this.logPath, 'a')
    // CENTER_TEST_NODE_ARGS: extra node flags for the daemons (profiling a bench: --cpu-prof)
    const argv = [...(process.env.CENTER_TEST_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''), CENTERD, '--config', this.configPath]
    // `ip netns exec` execs node in place: the child's pid is centerd's, so kill() reaches it
    const cmd = this.netns === undefined ? { cmd: process.execPath, args: argv } : this.netns.net.wrap(this.netns.host, process.execPath, argv)
    this.proc = spawn(cmd.cmd, cmd.args, { stdio: ['ignore', out, out] })
    const p = this.proc
    p.once('exit', () => { if (this.proc === p) this.proc = null })
    await waitFor(`${this.name} to answer on its admin socket`, async () => {
      if (this.proc === null) throw new Error(`${this.name} exited: ${this.tail()}`)
      return await this.ctl('status').then(() => true, () => false)
    }, 30_000, 50)
  }

  /** kill -9: no shutdown code runs. */
  async kill (): Promise<void> { await this.signal('SIGKILL') }
  async stop (): Promise<void> { await this.signal('SIGTERM') }

  private async signal (sig: NodeJS.Signals): Promise<void> {
    const p = this.proc
    if (p === null) return
    const gone = new Promise<void>((resolve) => p.once('exit', () => resolve()))
    p.kill(sig)
    await gone
    this.proc = null
  }

  /** centerctl --config ours --json ARGS; parsed output, or throws with stderr. */
  async ctl (...args: string[]): Promise<any> {
    try {
      const { stdout } = await run(process.execPath, [CENTERCTL, '--config', this.configPath, '--json', ...args], { timeout: 60_000 })
      return stdout.trim() === '' ? null : JSON.parse(stdout)
    } catch (err) {
      const e = err as { stdout?: string, stderr?: string, message: string }
      const parsed = safeJson(e.stdout)
      const error = new Error(`centerctl ${args.join(' ')} failed: ${e.stderr ?? e.message}`) as Error & { code?: string }
      error.code = parsed?.error?.code
      throw error
    }
  }

  logs (): Array<Record<string, any>> {
    if (!existsSync(this.logPath)) return []
    return readFileSync(this.logPath, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
  }

  /** GET /metrics of the running daemon (its address comes from the 'center peer started' line). */
  async metrics (): Promise<string> {
    const started = this.logs().filter((l) => l.msg === 'center peer started').pop()
    if (typeof started?.metrics !== 'string') throw new Error(`${this.name}: no metrics address logged`)
    const url = `http://${started.metrics as string}/metrics`
    if (this.netns === undefined) return await (await fetch(url)).text()
    const w = this.netns.net.wrap(this.netns.host, 'curl', ['-sf', url])
    return (await run(w.cmd, w.args)).stdout
  }

  tail (n = 20): string {
    return existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8').split('\n').slice(-n).join('\n') : ''
  }

  async destroy (): Promise<void> {
    await this.kill()
    await this.dropDb?.().catch(() => {})
    if (process.env.CENTER_TEST_KEEP === undefined) rmSync(this.dir, { recursive: true, force: true })
  }
}

function safeJson (s: string | undefined): any {
  try { return s === undefined ? null : JSON.parse(s) } catch { return null }
}

/** A throwaway local user with a real home: RFC 3 puts invitation files there. */
export async function createTestUser (): Promise<{ name: string, home: string, remove: () => Promise<void> }> {
  const name = `ctr${randomBytes(3).toString('hex')}`
  const home = join(mkdtempSync(join(tmpdir(), 'center-home-')), name)
  await run('useradd', ['-m', '-d', home, '-s', '/usr/sbin/nologin', name])
  return {
    name,
    home,
    remove: async () => {
      await run('userdel', ['-r', name]).catch(() => {})
      // userdel -r takes the home, not the temporary directory around it
      rmSync(dirname(home), { recursive: true, force: true })
    }
  }
}

/** Join `newcomer` to `sponsor` exactly as two sysadmins would, through centerctl only. */
export async function joinPeers (sponsor: PeerProcess, newcomer: PeerProcess, admin: string): Promise<void> {
  await newcomer.ctl(...await joinArgs(sponsor, newcomer, admin))
  await approveAndConnect(sponsor, newcomer)
}

/**
 * The same with `peer join --wait`, as a sysadmin types it (human output):
 * the command stays until the sponsor approves and the accounts backfill is
 * done. Returns its exit code and what it printed.
 */
export async function joinPeersWaiting (sponsor: PeerProcess, newcomer: PeerProcess, admin: string): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const args = await joinArgs(sponsor, newcomer, admin)
  const child = spawn(process.execPath, [CENTERCTL, '--config', newcomer.configPath, ...args, '--wait'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  try {
    await waitFor('the join request on the sponsor', async () => (await sponsor.ctl('peer', 'requests')).some((r: any) => r.uuid === newcomer.uuid), 20_000, 100)
    await approveAndConnect(sponsor, newcomer)
    return { code: await exited, stdout, stderr }
  } finally {
    child.kill()
  }
}

async function joinArgs (sponsor: PeerProcess, newcomer: PeerProcess, admin: string): Promise<string[]> {
  const invite = await sponsor.ctl('peer', 'invite', admin)
  const secret = readFileSync(invite.path, 'utf8').trim()
  const keyFile = join(newcomer.dir, `sponsor-${sponsor.name}.asc`)
  writeFileSync(keyFile, invite.publicKey)
  return ['peer', 'join', '--peer', invite.address, '--uuid', invite.uuid, '--key', keyFile, '--admin', admin, '--secret-file', invite.secretFile, '--secret', secret]
}

async function approveAndConnect (sponsor: PeerProcess, newcomer: PeerProcess): Promise<void> {
  const reqs = await sponsor.ctl('peer', 'requests')
  if (!reqs.some((r: any) => r.uuid === newcomer.uuid && r.state === 'pending')) throw new Error(`no pending request from ${newcomer.uuid}`)
  const approved = await sponsor.ctl('peer', 'approve', newcomer.uuid)
  if (approved.delivered !== true) throw new Error(`approve did not deliver: ${JSON.stringify(approved)}`)
  await waitFor('both peers to connect', async () => {
    const a = await sponsor.ctl('peer', 'list')
    const b = await newcomer.ctl('peer', 'list')
    return a.some((p: any) => p.uuid === newcomer.uuid && p.connection === 'open') && b.some((p: any) => p.uuid === sponsor.uuid && p.connection === 'open')
  }, 20_000)
}
