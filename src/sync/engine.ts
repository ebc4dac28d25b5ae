import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { lstat, mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import chokidar, { type FSWatcher } from 'chokidar'
import type { Logger } from '../logger.js'
import { QuotaExceededError } from '../quota/errors.js'
import { SyncPushError } from './errors.js'
import type { PeerSshInfo } from './keys.js'
import type { TreeLocks, TreeStates } from './locks.js'
import { rsyncPushArgv, sendOnlyRules, sshArgv, type SshRemote } from './rsync.js'
import { manifestFor, reconcileLocal, type PushManifest } from './state.js'
import { TMP_PREFIX, scanTree } from './tree.js'

export interface SyncEngineInit {
  root: string
  /** changes are gathered this long before a push */
  delayMs: number
  rescanSeconds: number
  userLimitBytes: number
  /** private key to push with */
  sshKey: string
  knownHostsFile: string
  /** ssh ControlMaster sockets */
  controlDir: string
  /** most bytes of version history sent with one push (it rides in a dispatcher event) */
  manifestBytes?: number
  /** rsync --timeout (I/O inactivity); the process is killed after twice this. @default 15 */
  rsyncTimeoutSeconds?: number
}

export interface SyncEngineComponents {
  logger: Logger
  locks: TreeLocks
  states: TreeStates
  selfDomain: string
  /** active peers we can push to (they sent us their sync-key) */
  peers: () => PeerSshInfo[]
  /** send the signed sync-push event that authorises one push of `tree` to `peer` */
  announce: (peer: string, tree: string, push: string, manifest: PushManifest, bytes: number) => Promise<void>
}

export interface PeerSyncStatus {
  peer: string
  domain: string
  lastSync: string | null
  lastError: string | null
  lastErrorAt: string | null
  /** trees waiting to be pushed to this peer */
  backlog: number
  pushing: string | null
  pushes: number
  failures: number
}

/** The synced trees: everything under root but home/ (and our own dot-dirs). */
const TOP = ['users', 'services', 'proposals', 'shared'] as const

/**
 * The sending side: chokidar watches the synced part of the root; changes
 * are gathered for `delayMs`, folded into each tree's history, and every
 * changed tree is pushed with rsync over ssh (one ControlMaster connection
 * per peer) to every peer, each push announced first by a signed sync-push
 * event. A peer that cannot be reached keeps its backlog and is retried
 * with backoff; a full rescan every `rescanSeconds` pushes everything again.
 */
export class SyncEngine {
  private watcher: FSWatcher | null = null
  private abort: AbortController | null = null
  private flushTimer: NodeJS.Timeout | null = null
  private flushing = false
  private rescanTimer: NodeJS.Timeout | null = null
  private readonly touched = new Set<string>()
  /** per peer: tree → generation it was marked at */
  private readonly dirty = new Map<string, Map<string, number>>()
  private readonly running = new Map<string, string>()
  private readonly retryAt = new Map<string, { at: number, delay: number, timer: NodeJS.Timeout | null }>()
  private readonly lastPushed = new Map<string, Map<string, Record<string, string>>>()
  private readonly status = new Map<string, PeerSyncStatus>()
  private readonly refusedLocally = new Map<string, string>()
  /** per tree: entries our own scan refuses (fifo, set-uid, links out): never sent */
  private readonly excluded = new Map<string, string[]>()
  /** per tree: every path its last scan approved (the only ones a push may send) */
  private readonly approved = new Map<string, string[]>()
  /** per peer: when we last saw its ControlMaster connection up */
  private readonly masters = new Map<string, number>()
  /** per tree: bytes at the last scan, announced with each push so a receiver can refuse before any transfer */
  private readonly sizes = new Map<string, number>()
  private gen = 0

  constructor (private readonly init: SyncEngineInit, private readonly c: SyncEngineComponents) {}

  async start (signal?: AbortSignal): Promise<void> {
    if (this.watcher !== null) return
    this.abort = new AbortController()
    signal?.addEventListener('abort', () => { void this.stop() }, { once: true })
    await mkdir(this.init.controlDir, { recursive: true, mode: 0o700 })
    await this.cleanTemps()
    const paths = TOP.map((t) => join(this.init.root, t))
    for (const p of paths) await mkdir(p, { recursive: true })
    this.watcher = chokidar.watch(paths, {
      ignoreInitial: true,
      followSymlinks: false,
      // our temp files and rsync's never count as changes
      ignored: (p: string) => /\/(\.center-tmp-|\.center-partial|\.~tmp~)/.test(p)
    })
    this.watcher.on('all', (_ev, p) => { if (typeof p === 'string') this.onPath(p) })
    this.watcher.on('error', (err) => { this.c.logger.warn({ err: (err as Error).message }, 'watcher error') })
    await new Promise<void>((resolve) => this.watcher?.once('ready', () => resolve()))
    // after a restart (or a kill -9) anything may have changed: rescan and push all
    await this.rescan()
    this.rescanTimer = setInterval(() => { void this.rescan() }, this.init.rescanSeconds * 1000)
    this.rescanTimer.unref()
  }

  async stop (): Promise<void> {
    const w = this.watcher
    if (w === null) return
    this.watcher = null
    this.abort?.abort()
    if (this.flushTimer !== null) clearTimeout(this.flushTimer)
    if (this.rescanTimer !== null) clearInterval(this.rescanTimer)
    for (const r of this.retryAt.values()) if (r.timer !== null) clearTimeout(r.timer)
    this.retryAt.clear()
    await w.close()
    // close the ControlMaster connections we opened
    for (const p of this.c.peers()) await this.closeMaster(p)
  }

  private remoteOf (p: PeerSshInfo): SshRemote {
    return { host: p.host, user: p.user, port: p.port, identityFile: this.init.sshKey, controlPath: join(this.init.controlDir, '%C'), knownHostsFile: this.init.knownHostsFile }
  }

  /** End the shared ssh connection to a peer (after a link failure: the next push dials afresh). */
  private async closeMaster (p: PeerSshInfo): Promise<void> {
    this.masters.delete(p.uuid)
    const [cmd, ...args] = sshArgv(this.remoteOf(p)) as [string, ...string[]]
    await new Promise<void>((resolve) => {
      execFile(cmd, [...args, '-O', 'exit', `${p.user}@${p.host}`], { timeout: 5000 }, () => resolve())
    })
  }

  /** The synced trees that exist now. */
  async trees (): Promise<string[]> {
    const out: string[] = []
    for (const top of TOP) {
      const dir = join(this.init.root, top)
      if (top === 'proposals' || top === 'shared') {
        if ((await lstat(dir).catch(() => null))?.isDirectory() === true) out.push(top)
        continue
      }
      const names = await readdir(dir, { withFileTypes: true }).catch(() => [])
      for (const d of names) if (d.isDirectory() && /^[a-z0-9_][a-z0-9_-]{0,63}$/.test(d.name)) out.push(`${top}/${d.name}`)
    }
    return out
  }

  private treeOf (abs: string): string | null {
    const rel = relative(this.init.root, abs).split(sep)
    const top = rel[0]
    if (top === 'proposals' || top === 'shared') return top
    if ((top === 'users' || top === 'services') && rel[1] !== undefined && rel[1] !== '') return `${top}/${rel[1]}`
    return null
  }

  private onPath (abs: string): void {
    const tree = this.treeOf(abs)
    if (tree === null) return
    this.touched.add(tree)
    this.scheduleFlush()
  }

  private scheduleFlush (): void {
    // one flush at a time: a burst of events while a scan runs becomes one more scan, not a pile of them
    if (this.flushTimer !== null || this.flushing) return
    this.flushTimer = setTimeout(() => { this.flushTimer = null; void this.flush() }, this.init.delayMs)
  }

  /** Fold the gathered changes into the histories; mark changed trees for every peer. */
  private async flush (): Promise<void> {
    this.flushing = true
    try {
      while (this.touched.size > 0 && this.watcher !== null) {
        const trees = [...this.touched]
        this.touched.clear()
        for (const t of trees) {
          const changed = await this.reconcile(t).catch((err) => {
            this.c.logger.warn({ tree: t, err: (err as Error).message }, 'sync: scanning a tree failed')
            return false
          })
          if (changed) this.markDirty(t)
          this.c.logger.debug({ tree: t, changed }, 'sync: local changes gathered')
        }
        this.pump()
      }
    } finally {
      this.flushing = false
    }
  }

  /** Returns whether the tree has local changes to push. Refuses (logs) a tree over quota. */
  private async reconcile (tree: string): Promise<boolean> {
    const dir = join(this.init.root, tree)
    const limit = tree.startsWith('users/') ? this.init.userLimitBytes : undefined
    return await this.c.locks.with(tree, async () => {
      const st = await lstat(dir).catch(() => null)
      if (st === null || !st.isDirectory()) {
        // a whole tree removed (an account deleted): nothing to push; peers remove theirs by their own accounts
        return false
      }
      const scan = await scanTree(dir, { maxBytes: limit })
      if (scan.overLimit) {
        const err = new QuotaExceededError(`not sending ${tree}: ${scan.totalBytes} bytes is over the quota of ${limit} bytes`)
        if (this.refusedLocally.get(tree) !== err.message) this.c.logger.warn({ tree, code: err.code, bytes: scan.totalBytes, limit }, err.message)
        this.refusedLocally.set(tree, err.message)
        return false
      }
      this.refusedLocally.delete(tree)
      this.excluded.set(tree, scan.forbidden.map((f) => f.path))
      this.approved.set(tree, scan.entries.map((e) => e.path))
      this.sizes.set(tree, scan.totalBytes)
      const state = await this.c.states.get(tree)
      const changed = reconcileLocal(state, scan, this.c.selfDomain)
      if (changed) await this.c.states.save(tree)
      return changed
    })
  }

  private markDirty (tree: string, peers: PeerSshInfo[] = this.c.peers()): void {
    const g = ++this.gen
    for (const p of peers) {
      let d = this.dirty.get(p.uuid)
      if (d === undefined) this.dirty.set(p.uuid, d = new Map())
      d.set(tree, g)
      // new content is worth a try now: most tree refusals are passing ("a push is
      // already running", "account not applied here yet"), and a tree that had backed
      // off to a minute must not hold a fresh edit that long
      const r = this.retryAt.get(`${p.uuid} ${tree}`)
      if (r !== undefined) {
        if (r.timer !== null) clearTimeout(r.timer)
        this.retryAt.delete(`${p.uuid} ${tree}`)
      }
    }
  }

  /** Push everything to everyone: at start, every rescanSeconds, and on `centerctl center resync`. */
  async rescan (): Promise<void> {
    try {
      for (const t of await this.trees()) {
        await this.reconcile(t)
        if (!this.refusedLocally.has(t)) this.markDirty(t)
      }
      this.pump()
    } catch (err) {
      this.c.logger.warn({ err: (err as Error).message }, 'sync rescan failed')
    }
  }

  /** A new peer (or one whose keys changed): it gets every tree. */
  peerAdded (peer: PeerSshInfo): void {
    this.trees().then((ts) => {
      for (const t of ts) if (!this.refusedLocally.has(t)) this.markDirty(t, [peer])
      this.c.logger.info({ peer: peer.uuid, trees: ts.length }, 'initial sync to a new peer queued')
      this.pump()
    }, () => {})
  }

  /** Try again now (a peer is back). */
  wake (peer?: string): void {
    for (const [uuid, r] of this.retryAt) {
      if (peer !== undefined && uuid !== peer) continue
      if (r.timer !== null) clearTimeout(r.timer)
      r.timer = null
      r.at = 0
    }
    this.pump()
  }

  private pump (): void {
    if (this.watcher === null) return
    for (const p of this.c.peers()) {
      const d = this.dirty.get(p.uuid)
      if (d === undefined || d.size === 0 || this.running.has(p.uuid)) continue
      if (this.waiting(p.uuid)) continue
      // every dirty tree is backing off: its own timer pumps again when due (re-running
      // now would spin runPeer -> setImmediate(pump) and starve the event loop)
      if (![...d.keys()].some((t) => !this.waiting(`${p.uuid} ${t}`))) continue
      void this.runPeer(p)
    }
  }

  /** A retry key (a peer, or `peer tree`) still backing off. */
  private waiting (key: string): boolean {
    const r = this.retryAt.get(key)
    return r !== undefined && r.at > Date.now()
  }

  private backOff (key: string, max: number): number {
    const prev = this.retryAt.get(key)
    if (prev?.timer != null) clearTimeout(prev.timer)
    const delay = Math.min(max, prev === undefined ? 1000 : prev.delay * 2)
    const timer = setTimeout(() => { const r = this.retryAt.get(key); if (r !== undefined) r.timer = null; this.pump() }, delay)
    timer.unref()
    this.retryAt.set(key, { at: Date.now() + delay, delay, timer })
    return delay
  }

  private async runPeer (p: PeerSshInfo): Promise<void> {
    const d = this.dirty.get(p.uuid) as Map<string, number>
    const initial = this.lastPushed.get(p.uuid) === undefined ? d.size : 0
    let done = 0
    this.running.set(p.uuid, '')
    try {
      for (;;) {
        if (this.watcher === null) return
        // trees the peer refused back off on their own: one refused tree never holds up the others
        const next = [...d.entries()].find(([t]) => !this.waiting(`${p.uuid} ${t}`))
        if (next === undefined) return
        const [tree, g] = next
        this.running.set(p.uuid, tree)
        try {
          await this.push(p, tree)
          if (d.get(tree) === g) d.delete(tree)
          this.retryAt.delete(p.uuid)
          this.retryAt.delete(`${p.uuid} ${tree}`)
          done++
          if (initial > 10 && done % 10 === 0) this.c.logger.info({ peer: p.uuid, done, of: initial }, 'initial sync progress')
        } catch (err) {
          const st = this.peerStatus(p)
          st.failures++
          st.lastError = `${tree}: ${(err as Error).message}`
          st.lastErrorAt = new Date().toISOString()
          // "center-sync: refused" comes from the peer's centerd about this tree; anything else is the link
          const treeOnly = /center-sync: refused/.test((err as Error).message)
          const retryInMs = treeOnly ? this.backOff(`${p.uuid} ${tree}`, 60_000) : this.backOff(p.uuid, 15_000)
          this.c.logger.warn({ peer: p.uuid, tree, err: (err as Error).message, retryInMs }, 'sync push failed')
          if (!treeOnly) {
            await this.closeMaster(p)
            return
          }
        }
      }
    } finally {
      this.running.delete(p.uuid)
      // changes that came in while we were pushing
      setImmediate(() => { this.pump() })
    }
  }

  private peerStatus (p: PeerSshInfo): PeerSyncStatus {
    let s = this.status.get(p.uuid)
    if (s === undefined) {
      s = { peer: p.uuid, domain: p.domain, lastSync: null, lastError: null, lastErrorAt: null, backlog: 0, pushing: null, pushes: 0, failures: 0 }
      this.status.set(p.uuid, s)
    }
    return s
  }

  /** One tree to one peer: the signed announcement, then rsync. */
  private async push (p: PeerSshInfo, tree: string): Promise<void> {
    const pushed = this.lastPushed.get(p.uuid)?.get(tree) ?? null
    const { manifest, ids } = await this.c.locks.with(tree, async () => {
      const state = await this.c.states.get(tree)
      const ids: Record<string, string> = {}
      for (const [path, v] of Object.entries(state.files)) ids[path] = v.c[0] as string
      return { manifest: manifestFor(state, pushed, this.init.manifestBytes ?? 40_000), ids }
    })
    const id = randomBytes(9).toString('base64url')
    await this.c.announce(p.uuid, tree, id, manifest, this.sizes.get(tree) ?? 0)
    const remote = this.remoteOf(p)
    const approved = this.approved.get(tree)
    // no scan yet (cannot happen after reconcile, but never send an empty list: --delete would empty the peer's mirror)
    const sendOnlyFile = approved === undefined ? undefined : join(this.init.controlDir, `send-${id}.rules`)
    if (sendOnlyFile !== undefined) await writeFile(sendOnlyFile, sendOnlyRules(approved ?? []), { mode: 0o600 })
    try {
      await this.rsyncTo(p, tree, id, remote, sendOnlyFile)
    } finally {
      if (sendOnlyFile !== undefined) await rm(sendOnlyFile, { force: true })
    }
    let m = this.lastPushed.get(p.uuid)
    if (m === undefined) this.lastPushed.set(p.uuid, m = new Map())
    m.set(tree, ids)
    const st = this.peerStatus(p)
    st.lastSync = new Date().toISOString()
    st.pushes++
  }

  private async rsyncTo (p: PeerSshInfo, tree: string, id: string, remote: SshRemote, sendOnlyFile: string | undefined): Promise<void> {
    const argv = rsyncPushArgv({
      source: join(this.init.root, tree),
      dest: join(p.root, tree, `.push-${id}`),
      maxFileBytes: tree.startsWith('users/') ? this.init.userLimitBytes : 1024 * 1024 * 1024,
      timeoutSeconds: this.init.rsyncTimeoutSeconds ?? 15,
      exclude: this.excluded.get(tree),
      sendOnlyFile,
      remote
    })
    // (re)start the shared connection when we have not seen it lately: it dies after 60 s idle
    if (Date.now() - (this.masters.get(p.uuid) ?? 0) > 20_000) await startMaster(remote)
    this.masters.set(p.uuid, Date.now())
    const t0 = Date.now()
    await runRsync(argv, (this.init.rsyncTimeoutSeconds ?? 15) * 2000, this.abort?.signal)
    this.c.logger.debug({ peer: p.uuid, tree, ms: Date.now() - t0 }, 'sync: pushed')
  }

  /** Per peer: last sync, backlog, errors. */
  statusList (): PeerSyncStatus[] {
    return this.c.peers().map((p) => ({ ...this.peerStatus(p), backlog: this.dirty.get(p.uuid)?.size ?? 0, pushing: this.running.get(p.uuid) || null }))
  }

  /** Trees this box refuses to send (over quota), with why. */
  refusals (): Array<{ tree: string, reason: string }> {
    return [...this.refusedLocally].map(([tree, reason]) => ({ tree, reason }))
  }

  /** A kill -9 in the middle of a merge can leave temp files: they are never shown as files. */
  private async cleanTemps (): Promise<void> {
    for (const top of TOP) {
      const dir = join(this.init.root, top)
      const all = await readdir(dir, { recursive: true }).catch(() => [] as string[])
      for (const rel of all) {
        const base = rel.split('/').pop() as string
        if (base.startsWith(TMP_PREFIX)) await rm(join(dir, rel), { force: true, recursive: true }).catch(() => {})
      }
    }
  }
}

/**
 * rsync, no shell; rejects with the last lines of stderr. Settles on the
 * process's exit, not on its pipes closing: the ssh ControlMaster that
 * the first push starts lives on in the background holding our stderr.
 */
async function runRsync (argv: string[], timeoutMs: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn('rsync', argv, { stdio: ['ignore', 'ignore', 'pipe'], signal })
    let stderr = ''
    child.stderr.on('data', (b: Buffer) => { if (stderr.length < 64 * 1024) stderr += b.toString() })
    child.on('error', () => {})
    // rsync's own --timeout covers a stalled transfer; this also covers a stalled ssh start
    const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
    child.on('exit', (code, sig) => {
      clearTimeout(timer)
      child.stderr.destroy()
      if (code === 0) { resolve(); return }
      const lines = stderr.trim().split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('Warning: Permanently'))
      // the peer's own words (a refusal, "Permission denied") beat rsync's generic epilogue
      const own = lines.filter((l) => !/^rsync( error)?: (connection unexpectedly closed|unexplained error|error in rsync protocol)/.test(l) && !l.startsWith('rsync error:'))
      const why = (own.length > 0 ? own : lines).slice(-2).join(' / ')
      reject(new SyncPushError(`rsync exited ${code ?? sig ?? '?'}${why === '' ? '' : `: ${why}`}`))
    })
  })
}

/**
 * Start the shared ssh connection to a peer on its own (-N: no session, so
 * no forced command; -f: background once authenticated), with no pipes of
 * ours: a master started by rsync's own ssh would keep rsync's stderr open.
 * A master already running makes this a no-op.
 */
async function startMaster (r: SshRemote): Promise<void> {
  const [cmd, ...args] = sshArgv(r) as [string, ...string[]]
  const dest = `${r.user}@${r.host}`
  const running = await new Promise<boolean>((resolve) => {
    execFile(cmd, [...args, '-O', 'check', dest], { timeout: 5000 }, (err) => resolve(err === null))
  })
  if (running) return
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd, [...args, '-N', '-f', dest], { stdio: 'ignore', detached: false })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 15_000)
    child.on('error', (err) => { clearTimeout(timer); reject(err) })
    child.on('exit', (code) => {
      clearTimeout(timer)
      if (code === 0) resolve()
      else reject(new SyncPushError(`ssh to ${dest} port ${r.port ?? 22} failed (exit ${String(code)})`))
    })
  })
}
