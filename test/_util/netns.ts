import { execFile, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { aptInstall } from './apt.js'

const run = promisify(execFile)

/**
 * Peer hosts in network namespaces (HARNESS.md §2): one namespace per host,
 * each with `lo` and an `eth0` veth whose other end sits on a bridge in a
 * switch namespace of its own, so the root namespace gets no new links,
 * addresses or routes. Everything is named PREFIX + a random suffix, so runs
 * (and other suites) never collide, and `destroy()` (also run at process exit)
 * removes it all.
 */
export interface NetnsHost {
  /** the test's name for the host, e.g. 'a' */
  name: string
  /** the namespace, for `ip netns exec` */
  ns: string
  /** its first IPv4 address (on eth0, /24) */
  ip: string
  /** the switch-side end of its veth (in the switch namespace): down = host cut off */
  port: string
}

/** Where a process runs: host `host` of `net` (the option of PeerProcess, startSlapd, startAccountPeer). */
export interface NetnsPlacement { net: Netns, host: string }

/** Why namespaces cannot be used here, or null when they can (installs iproute2 if it must). */
export function netnsUnsupported (): string | null {
  if (process.getuid?.() !== 0) return 'network namespaces need root'
  if (spawnSync('ip', ['-V'], { stdio: 'ignore' }).status !== 0) aptInstall(['iproute2'])
  if (spawnSync('ip', ['-V'], { stdio: 'ignore' }).status !== 0) return 'iproute2 (ip) is not installed and could not be installed'
  return null
}

const SUBNET = '10.55.0'
const live = new Set<Netns>()
process.once('exit', () => { for (const n of live) n.destroySync() })

export class Netns {
  private readonly hosts = new Map<string, NetnsHost>()
  private destroyed = false

  private constructor (readonly prefix: string, readonly switchNs: string) {}

  /** A switch and one namespace per name in `hosts`, addressed 10.55.0.1, .2, … in that order. */
  static async create (hosts: string[], prefix = 'cn5'): Promise<Netns> {
    const why = netnsUnsupported()
    if (why !== null) throw new Error(why)
    const p = `${prefix}${randomBytes(3).toString('hex')}`
    const n = new Netns(p, `${p}-sw`)
    live.add(n)
    try {
      await ip('netns', 'add', n.switchNs)
      await ip('-n', n.switchNs, 'link', 'set', 'dev', 'lo', 'up')
      await ip('-n', n.switchNs, 'link', 'add', 'br0', 'type', 'bridge')
      await ip('-n', n.switchNs, 'link', 'set', 'dev', 'br0', 'up')
      let i = 0
      for (const name of hosts) await n.addHost(name, `${SUBNET}.${++i}`)
    } catch (err) {
      n.destroySync()
      throw err
    }
    return n
  }

  private async addHost (name: string, addr: string): Promise<void> {
    const ns = `${this.prefix}-${name}`
    const port = `${this.prefix}${name}`.slice(0, 15)
    await ip('netns', 'add', ns)
    await ip('-n', ns, 'link', 'set', 'dev', 'lo', 'up')
    // created directly inside the two namespaces: nothing appears in the root one
    await ip('link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', this.switchNs)
    await ip('-n', this.switchNs, 'link', 'set', 'dev', port, 'master', 'br0')
    await ip('-n', this.switchNs, 'link', 'set', 'dev', port, 'up')
    await ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0')
    await ip('-n', ns, 'link', 'set', 'dev', 'eth0', 'up')
    this.hosts.set(name, { name, ns, ip: addr, port })
  }

  host (name: string): NetnsHost {
    const h = this.hosts.get(name)
    if (h === undefined) throw new Error(`no netns host ${name}`)
    return h
  }

  /** The command line that runs `cmd args` inside the host's namespace (exec, no fork: the pid is the command's). */
  wrap (name: string, cmd: string, args: string[]): { cmd: string, args: string[] } {
    return { cmd: 'ip', args: ['netns', 'exec', this.host(name).ns, cmd, ...args] }
  }

  /** Run a command inside the host's namespace and return its stdout. */
  async exec (name: string, cmd: string, ...args: string[]): Promise<string> {
    const w = this.wrap(name, cmd, args)
    const { stdout } = await run(w.cmd, w.args, { timeout: 30_000 })
    return stdout
  }

  /** Another IPv4 address for the host (a peer that moves), e.g. '10.55.0.101'. */
  async addAddress (name: string, addr: string): Promise<void> {
    await ip('-n', this.host(name).ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0')
  }

  async removeAddress (name: string, addr: string): Promise<void> {
    await ip('-n', this.host(name).ns, 'addr', 'del', `${addr}/24`, 'dev', 'eth0')
  }

  /** An unused address on the subnet for `name` (index from 100 up). */
  spareAddress (index: number): string { return `${SUBNET}.${100 + index}` }

  /** Cut the host off from every other (its switch port goes down; its addresses stay). */
  async partition (name: string): Promise<void> {
    await ip('-n', this.switchNs, 'link', 'set', 'dev', this.host(name).port, 'down')
  }

  async heal (name: string): Promise<void> {
    await ip('-n', this.switchNs, 'link', 'set', 'dev', this.host(name).port, 'up')
  }

  /**
   * Stop `name` from opening TCP connections to `toIp:port` (nftables in its
   * namespace). Connections the other side opens still work: their packets
   * from `name` go *from* that port, not to it. Undo with `allowDial`.
   */
  async blockDial (name: string, toIp: string, port: number): Promise<void> {
    if (spawnSync('nft', ['--version'], { stdio: 'ignore' }).status !== 0) aptInstall(['nftables'])
    const rules = `table inet cn5block {\n  chain output { type filter hook output priority 0; policy accept; ip daddr ${toIp} tcp dport ${port} drop; }\n}\n`
    const w = this.wrap(name, 'nft', ['-f', '-'])
    const r = spawnSync(w.cmd, w.args, { input: rules, encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`nft failed in ${name}: ${r.stderr}`)
  }

  async allowDial (name: string): Promise<void> {
    await this.exec(name, 'nft', 'delete', 'table', 'inet', 'cn5block')
  }

  /** Kill whatever still runs inside (by pid), then delete every namespace. Idempotent. */
  destroySync (): void {
    if (this.destroyed) return
    this.destroyed = true
    live.delete(this)
    for (const ns of [...[...this.hosts.values()].map((h) => h.ns), this.switchNs]) {
      const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? ''
      for (const pid of pids.split('\n').filter((x) => /^\d+$/.test(x))) {
        try { process.kill(Number(pid), 'SIGKILL') } catch { /* already gone */ }
      }
      spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' })
    }
  }

  async destroy (): Promise<void> { this.destroySync() }
}

async function ip (...args: string[]): Promise<void> {
  try {
    await run('ip', args, { timeout: 10_000 })
  } catch (err) {
    throw new Error(`ip ${args.join(' ')} failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`)
  }
}
