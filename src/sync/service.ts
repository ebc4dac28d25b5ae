import { chmod, chown, mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Config } from '../config/index.js'
import type { Dispatcher } from '../dispatcher/index.js'
import { BadRequestError, NotFoundError, SchemaError } from '../errors.js'
import type { Identity } from '../identity/files.js'
import type { Logger } from '../logger.js'
import type { PeerDirectory, PeerInfo } from '../peers/directory.js'
import { SYNC_SERVICE, type ServiceRegistry } from '../services/registry.js'
import type { Envelope } from '../wire/envelope.js'
import { nowSeconds } from '../wire/envelope.js'
import { SyncEngine, type PeerSyncStatus } from './engine.js'
import { accountIds, authorizedKeyLine, checkPublicKey, ensureKeyPair, knownHostsLines, PeerSshStore, writeAtomic, type PeerSshInfo } from './keys.js'
import { TreeLocks, TreeStates } from './locks.js'
import { SyncReceiver, type ReceiveResult } from './receiver.js'
import { checkManifest, type PushManifest } from './state.js'
import { scanTree, userTreeOf } from './tree.js'
import { InboxConsumer } from '../services/consumer.js'

export { SYNC_SERVICE }
export const SYNC_EVENTS = ['sync-key', 'sync-push'] as const
/** a sync-push older than this is not a grant any more (the pusher has given up on it) */
const GRANT_MAX_AGE_S = 60

export interface CenterSyncInit {
  root: string
  stateDir: string
  sync: Config['sync']
  userLimitBytes: number
}

export interface CenterSyncComponents {
  dispatcher: Dispatcher
  registry: ServiceRegistry
  peers: PeerDirectory
  identity: Identity
  logger: Logger
}

/** The host part of a peer address (`host:port` or `[v6]:port`). */
export function hostOfAddress (address: string): string {
  const m = /^\[([0-9a-fA-F:.]+)\]:\d+$/.exec(address) ?? /^([^:]+):\d+$/.exec(address)
  if (m === null) throw new SchemaError(`cannot take a host from peer address ${JSON.stringify(address)}`)
  return m[1] as string
}

/**
 * The built-in service `center-sync`: the /center live sync of one peer.
 * It owns the sender (SyncEngine), the receiver (SyncReceiver) and the key
 * exchange: on start and whenever a peer is admitted it sends `sync-key`
 * (its push key, sshd host key, ssh port/user and root) to the peer; a
 * received `sync-key` goes into the sync account's authorized_keys (with
 * the forced command naming that peer) and into our known_hosts. Each push
 * is announced by a signed `sync-push` naming the tree; the receiver allows
 * exactly one rsync of that tree from that peer per announcement.
 */
export class CenterSync {
  private readonly consumer: InboxConsumer
  /** the forced command's script, as copied into <root>/.sync/bin */
  private forcedScript = fileURLToPath(new URL('./receive-main.js', import.meta.url))
  private readonly locks = new TreeLocks()
  private readonly states: TreeStates
  private readonly store: PeerSshStore
  private readonly dir: string
  private engine: SyncEngine | null = null
  private receiver: SyncReceiver | null = null
  private publicKey = ''
  private hostKey = ''
  private readonly received = new Map<string, ReceiveResult>()

  constructor (private readonly init: CenterSyncInit, private readonly c: CenterSyncComponents) {
    this.dir = join(init.stateDir, 'sync')
    this.states = new TreeStates(join(this.dir, 'trees'))
    this.store = new PeerSshStore(join(this.dir, 'peers.json'))
    this.consumer = new InboxConsumer({ service: SYNC_SERVICE, events: SYNC_EVENTS, what: 'sync' }, { ...c, handle: async (env) => { await this.handle(env) } })
  }

  /** sshd reads it as the sync account: it lives in <root>/.sync (root-owned, the account's group may read) */
  get authorizedKeysFile (): string { return join(this.init.root, '.sync', 'authorized_keys') }
  get knownHostsFile (): string { return join(this.dir, 'known_hosts') }
  get receiveSocket (): string { return join(this.init.root, '.sync', 'receive.sock') }

  async start (signal?: AbortSignal): Promise<void> {
    if (this.consumer.running) return
    const { root, sync } = this.init
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    const ids = await accountIds(sync.sshUser)
    this.publicKey = await ensureKeyPair(sync.sshKey, `center-sync@${this.c.identity.domain}`)
    this.hostKey = checkPublicKey(await readFile(sync.hostKey, 'utf8').catch(() => ''), `sshd host key ${sync.hostKey}`)
    await this.store.load()
    // <root>/.sync: root-owned, the sync account's group may enter (its spool and our socket live there)
    const dotSync = join(root, '.sync')
    await mkdir(dotSync, { recursive: true, mode: 0o750 })
    await chown(dotSync, 0, ids.gid)
    await chmod(dotSync, 0o750)
    this.forcedScript = await installForcedCommand(join(dotSync, 'bin'))
    await this.writeSshFiles()
    this.receiver = new SyncReceiver({
      root, spoolDir: join(dotSync, 'spool'), socket: this.receiveSocket, syncUid: ids.uid, syncGid: ids.gid, userLimitBytes: this.init.userLimitBytes
    }, {
      logger: this.c.logger,
      locks: this.locks,
      states: this.states,
      selfDomain: this.c.identity.domain,
      peerDomain: (uuid) => this.c.peers.active(uuid)?.domain,
      onResult: (r) => { this.received.set(`${r.peer} ${r.tree}`, r) }
    })
    this.engine = new SyncEngine({
      root,
      delayMs: sync.delayMs,
      rescanSeconds: sync.rescanSeconds,
      userLimitBytes: this.init.userLimitBytes,
      sshKey: sync.sshKey,
      knownHostsFile: this.knownHostsFile,
      controlDir: join(this.dir, 'cm')
    }, {
      logger: this.c.logger,
      locks: this.locks,
      states: this.states,
      selfDomain: this.c.identity.domain,
      peers: () => this.store.list().filter((p) => this.c.peers.active(p.uuid) !== undefined),
      announce: async (peer, tree, push, manifest, bytes) => { await this.announce(peer, tree, push, manifest, bytes) }
    })
    await this.receiver.start()
    await this.consumer.start()
    this.c.peers.on('admitted', this.onAdmitted)
    this.consumer.drain()
    await this.engine.start(signal)
    await this.sendKey(this.c.peers.activeList().map((p) => p.uuid))
    this.c.logger.info({ root, peers: this.engine.statusList().length, authorizedKeys: this.authorizedKeysFile }, 'center sync started')
  }

  async stop (): Promise<void> {
    if (!this.consumer.running) return
    this.c.peers.off('admitted', this.onAdmitted)
    await this.consumer.stop()
    await this.engine?.stop()
    await this.receiver?.stop()
  }

  private readonly onAdmitted = (p: PeerInfo): void => {
    this.sendKey([p.uuid]).catch((err) => { this.c.logger.warn({ err: (err as Error).message, peer: p.uuid }, 'sending the sync key failed') })
  }

  private async sendKey (to: string[]): Promise<void> {
    if (to.length === 0) return
    const data = { publicKey: this.publicKey, hostKey: this.hostKey, port: this.init.sync.sshPort, user: this.init.sync.sshUser, root: this.init.root }
    await this.c.dispatcher.submit(SYNC_SERVICE, to.map((uuid) => ({ name: 'sync-key', to: uuid, data })))
  }

  private async announce (peer: string, tree: string, push: string, manifest: PushManifest, bytes: number): Promise<void> {
    await this.c.dispatcher.submit(SYNC_SERVICE, [{ name: 'sync-push', to: peer, data: { tree, push, bytes, ...manifest }, ttlSeconds: GRANT_MAX_AGE_S }])
  }


  private async handle (env: Envelope): Promise<void> {
    const from = env.meta.from
    if (from === this.c.identity.uuid) return
    const peer = this.c.peers.active(from)
    if (peer === undefined) throw new NotFoundError(`${env.name} from ${from}, which is not an active peer`)
    const data = env.data as Record<string, unknown>
    if (env.name === 'sync-key') await this.onKey(peer, data)
    else if (env.name === 'sync-push') this.onPush(peer, env, data)
  }

  private async onKey (peer: PeerInfo, d: Record<string, unknown>): Promise<void> {
    const port = Number(d?.port)
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new SchemaError('sync-key port must be 1..65535')
    if (typeof d.user !== 'string' || !/^[a-z_][a-z0-9_-]{0,31}$/.test(d.user)) throw new SchemaError('sync-key user is not an account name')
    if (typeof d.root !== 'string' || !/^\/[A-Za-z0-9._/-]{0,200}$/.test(d.root) || d.root.includes('..')) throw new SchemaError('sync-key root must be an absolute plain path')
    const info: PeerSshInfo = {
      uuid: peer.uuid,
      domain: peer.domain,
      host: hostOfAddress(peer.address),
      port,
      user: d.user,
      publicKey: checkPublicKey(d.publicKey, 'sync-key publicKey'),
      hostKey: checkPublicKey(d.hostKey, 'sync-key hostKey'),
      root: d.root.replace(/\/$/, '')
    }
    const known = this.store.get(peer.uuid) !== undefined
    if (!(await this.store.set(info))) return
    await this.writeSshFiles()
    this.c.logger.info({ peer: peer.uuid, host: info.host, port }, 'sync key of a peer installed')
    // a peer that did not know us yet (or changed its keys) may lack ours
    if (!known) await this.sendKey([peer.uuid])
    this.engine?.peerAdded(info)
  }

  private onPush (peer: PeerInfo, env: Envelope, d: Record<string, unknown>): void {
    if (nowSeconds() - env.meta.iat > GRANT_MAX_AGE_S) return
    if (typeof d?.tree !== 'string' || typeof d.push !== 'string') throw new SchemaError('sync-push needs tree and push')
    const bytes = Number.isSafeInteger(d.bytes) && (d.bytes as number) >= 0 ? d.bytes as number : 0
    this.receiver?.grant(peer.uuid, d.tree, d.push, checkManifest(d), bytes)
  }

  /** authorized_keys for the sync account and our known_hosts, for active peers only. */
  private async writeSshFiles (): Promise<void> {
    const active = this.store.list().filter((p) => this.c.peers.active(p.uuid) !== undefined)
    const forced = { node: process.execPath, script: this.forcedScript, socket: this.receiveSocket }
    await writeAtomic(this.authorizedKeysFile, active.map((p) => authorizedKeyLine(p, forced)).join('\n') + '\n', 0o644)
    await writeAtomic(this.knownHostsFile, knownHostsLines(active), 0o644)
  }

  // ---- admin --------------------------------------------------------------------

  status (): { peers: Array<PeerSyncStatus & { lastReceived: string | null, lastReceiveError: string | null }>, refusals: Array<{ tree: string, reason: string }> } {
    const peers = (this.engine?.statusList() ?? []).map((s) => {
      const got = [...this.received.values()].filter((r) => r.peer === s.peer).sort((a, b) => b.at.getTime() - a.at.getTime())
      const err = got.find((r) => !r.ok)
      return { ...s, lastReceived: got.find((r) => r.ok)?.at.toISOString() ?? null, lastReceiveError: err === undefined ? null : `${err.tree}: ${err.error?.message ?? ''}` }
    })
    return { peers, refusals: this.engine?.refusals() ?? [] }
  }

  async usage (name: string): Promise<{ name: string, bytes: number, files: number, limit: number, over: boolean }> {
    let dir: string
    try { dir = userTreeOf(this.init.root, name) } catch (err) { throw new BadRequestError((err as Error).message) }
    const scan = await scanTree(dir, {}).catch(() => null)
    if (scan === null) throw new NotFoundError(`no shared directory ${dir} on this peer`)
    const files = scan.entries.filter((e) => e.kind === 'file').length
    return { name, bytes: scan.totalBytes, files, limit: this.init.userLimitBytes, over: scan.totalBytes > this.init.userLimitBytes }
  }

  async resync (): Promise<{ queued: boolean }> {
    await this.engine?.rescan()
    return { queued: true }
  }
}

/**
 * Copy the forced command (receive-main.js and the two modules it imports)
 * into <root>/.sync/bin, root-owned and readable by the sync account. The
 * account then needs no access to wherever centerd is installed (a 0700
 * checkout, a home directory), and an upgrade that moves the package does not
 * break the line in authorized_keys.
 */
async function installForcedCommand (dir: string): Promise<string> {
  const here = (rel: string): string => fileURLToPath(new URL(rel, import.meta.url))
  const files: Array<[string, string]> = [['./receive-main.js', 'sync/receive-main.js'], ['../rpc/ndjson.js', 'rpc/ndjson.js'], ['../errors.js', 'errors.js']]
  for (const sub of ['', 'sync', 'rpc']) {
    await mkdir(join(dir, sub), { recursive: true, mode: 0o755 })
    await chmod(join(dir, sub), 0o755)
  }
  await writeAtomic(join(dir, 'package.json'), '{ "type": "module" }\n', 0o644)
  for (const [from, to] of files) await writeAtomic(join(dir, to), await readFile(here(from), 'utf8'), 0o644)
  return join(dir, 'sync', 'receive-main.js')
}
