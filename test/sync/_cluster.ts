import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { aptInstall } from '../_util/apt.js'
import { Netns, netnsUnsupported } from '../_util/netns.js'
import { PeerProcess, createTestUser, joinPeers } from '../_util/peers.js'
import { waitFor } from '../_util/wait.js'

const run = promisify(execFile)

/** Why the live-sync cluster cannot run here, or null (installs sshd and rsync when root). */
export function clusterUnsupported (): string | null {
  const why = netnsUnsupported()
  if (why !== null) return why
  if (!existsSync('/usr/sbin/sshd') || spawnSync('rsync', ['--version'], { stdio: 'ignore' }).status !== 0) aptInstall(['openssh-server', 'rsync'])
  if (!existsSync('/usr/sbin/sshd')) return 'openssh-server is not installed and could not be installed'
  if (spawnSync('rsync', ['--version'], { stdio: 'ignore' }).status !== 0) return 'rsync is not installed and could not be installed'
  return null
}

export interface SyncHost {
  name: string
  peer: PeerProcess
  /** this peer's /center */
  root: string
  ip: string
  sshd: ChildProcess | null
  sshdConfig: string
}

export const ALICE_UID = 20001

/**
 * Peers on hosts of their own (network namespaces, HARNESS.md §2), each with
 * its own sshd listening on its address (own host key, AuthorizedKeysFile =
 * the daemon's sync/authorized_keys) and its own /center directory, plus a
 * real system account for the sync logins. Everything is named cn4<random>.
 */
export class SyncCluster {
  readonly hosts = new Map<string, SyncHost>()
  private constructor (readonly net: Netns, readonly base: string, readonly syncUser: string, readonly admin: Awaited<ReturnType<typeof createTestUser>>) {}

  static async create (names: string[], perHostToml: (name: string) => string = () => ''): Promise<SyncCluster> {
    const net = await Netns.create(names, 'cn4')
    const syncUser = `cn4s${randomBytes(3).toString('hex')}`
    await run('useradd', ['--system', '-M', '-d', '/', '-s', '/bin/sh', syncUser])
    // '!' (useradd's default) would be a locked account, which sshd refuses even for keys
    await run('usermod', ['-p', '*', syncUser])
    const admin = await createTestUser()
    const base = mkdtempSync(join(tmpdir(), 'cn4-sync-'))
    chmodSync(base, 0o755)
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 })
    const c = new SyncCluster(net, base, syncUser, admin)
    try {
      for (const n of names) await c.addHost(n, perHostToml(n))
    } catch (err) {
      await c.destroy()
      throw err
    }
    return c
  }

  private async addHost (name: string, extra: string): Promise<void> {
    const dir = join(this.base, name)
    const root = join(dir, 'center')
    mkdirSync(root, { recursive: true, mode: 0o755 })
    chmodSync(dir, 0o755)
    chmodSync(root, 0o755)
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `host-${name}`, '-f', join(dir, 'hostkey')])
    const ip = this.net.host(name).ip
    const peer = await PeerProcess.create({
      name: `sync-${name}`,
      netns: { net: this.net, host: name },
      peerToml: 'greeting = "auto"',
      extraToml: [
        // `extra` holds more [center] lines (e.g. user_limit_mb)
        '[center]', `root = "${root}"`, extra.includes('user_limit_mb') ? '' : 'user_limit_mb = 5', extra,
        '[sync]', 'enabled = true', `ssh_user = "${this.syncUser}"`, `host_key = "${join(dir, 'hostkey.pub')}"`, 'delay_ms = 20', 'rescan_seconds = 3600'
      ].join('\n') + '\n'
    })
    const sshdConfig = join(dir, 'sshd_config')
    writeFileSync(sshdConfig, [
      `ListenAddress ${ip}`, 'Port 22', `HostKey ${join(dir, 'hostkey')}`,
      `AuthorizedKeysFile ${join(root, '.sync', 'authorized_keys')}`,
      // the test's directories live under /tmp (world-writable), which StrictModes rejects
      'StrictModes no', 'UsePAM no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
      `AllowUsers ${this.syncUser}`, `PidFile ${join(dir, 'sshd.pid')}`, 'LogLevel VERBOSE', 'MaxStartups 100'
    ].join('\n') + '\n')
    this.hosts.set(name, { name, peer, root, ip, sshd: null, sshdConfig })
    this.startSshd(name)
  }

  host (n: string): SyncHost { return this.hosts.get(n) as SyncHost }

  startSshd (n: string): void {
    const h = this.host(n)
    if (h.sshd !== null) return
    const cmd = this.net.wrap(n, '/usr/sbin/sshd', ['-D', '-e', '-f', h.sshdConfig])
    const log = join(this.base, n, 'sshd.log')
    h.sshd = spawn(cmd.cmd, cmd.args, { stdio: ['ignore', 'ignore', 'pipe'] })
    h.sshd.stderr?.on('data', (b: Buffer) => { writeFileSync(log, b, { flag: 'a' }) })
    const p = h.sshd
    p.once('exit', () => { if (h.sshd === p) h.sshd = null })
  }

  async stopSshd (n: string): Promise<void> {
    const h = this.host(n)
    const p = h.sshd
    if (p === null) return
    const gone = new Promise<void>((resolve) => p.once('exit', () => resolve()))
    p.kill('SIGTERM')
    await gone
    h.sshd = null
  }

  /** Start every peer, join them in a chain (A sponsors B, B sponsors C…) and wait for sync keys everywhere. */
  async startAll (): Promise<void> {
    const names = [...this.hosts.keys()]
    for (const n of names) await this.host(n).peer.start()
    for (let i = 1; i < names.length; i++) await joinPeers(this.host(names[i - 1] as string).peer, this.host(names[i] as string).peer, this.admin.name)
    await waitFor('every peer to know every other\'s sync key', () => names.every((n) => this.knownPeers(n) === names.length - 1), 60_000, 200)
  }

  /** How many peers' keys are in n's authorized_keys. */
  knownPeers (n: string): number {
    const f = join(this.host(n).root, '.sync', 'authorized_keys')
    if (!existsSync(f)) return 0
    return readFileSync(f, 'utf8').split('\n').filter((l) => l.includes('command=')).length
  }

  /** What the accounts service does when alice is applied: her shared directory, owned by her. */
  makeUserTree (n: string, user = 'alice', uid = ALICE_UID): string {
    const d = join(this.host(n).root, 'users', user)
    mkdirSync(d, { recursive: true, mode: 0o755 })
    chownSync(d, uid, uid)
    return d
  }

  path (n: string, rel: string): string { return join(this.host(n).root, rel) }

  /** Every entry under a tree, recursively (relative paths), for "no partial file" checks. */
  listAll (n: string, rel: string): string[] {
    const d = this.path(n, rel)
    return existsSync(d) ? (readdirSync(d, { recursive: true }) as string[]).sort() : []
  }

  async destroy (): Promise<void> {
    for (const h of this.hosts.values()) {
      await h.peer.destroy().catch(() => {})
      await this.stopSshd(h.name).catch(() => {})
    }
    await this.net.destroy()
    await run('userdel', [this.syncUser]).catch(() => {})
    await this.admin.remove()
    if (process.env.CENTER_TEST_KEEP === undefined) rmSync(this.base, { recursive: true, force: true })
  }
}
