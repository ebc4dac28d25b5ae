import type { Server, Socket } from 'node:net'
import { chown, lstat, mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { CenterError, toWireError } from '../errors.js'
import type { Logger } from '../logger.js'
import { listenUnix, onLines, writeLine } from '../rpc/ndjson.js'
import { QuotaExceededError } from '../quota/errors.js'
import { SyncNotAuthorizedError, SyncRefusedError } from './errors.js'
import { mergeIncoming, type MergeReport } from './merge.js'
import { validateForcedCommand } from './rsync.js'
import type { PushManifest } from './state.js'
import { treeSlug, type TreeLocks, type TreeStates } from './locks.js'
import { checkIncoming } from './tree.js'

export interface SyncReceiverInit {
  /** the /center root */
  root: string
  /** staging mirrors, one per (peer, tree), owned by the sync account */
  spoolDir: string
  /** where the forced command reaches us (0660, group of the sync account) */
  socket: string
  syncUid: number
  syncGid: number
  /** a users/<name> tree is never accepted over this */
  userLimitBytes: number
  /** how long the forced command waits for the signed sync-push event; @default 10000 */
  grantWaitMs?: number
}

export interface SyncReceiverComponents {
  logger: Logger
  locks: TreeLocks
  states: TreeStates
  /** our domain, and a peer's (to name conflict copies); undefined = not an active peer */
  selfDomain: string
  peerDomain: (uuid: string) => string | undefined
  /** after every merge or refusal, for status and the engine */
  onResult: (r: ReceiveResult) => void
}

export interface ReceiveResult {
  peer: string
  tree: string
  at: Date
  ok: boolean
  report?: MergeReport
  error?: { code: string, message: string }
}

interface Grant { push: string, manifest: PushManifest, bytes: number, exp: number }
interface Waiter { resolve: (g: Grant) => void }

/** Non-user trees still get a cap, so one peer cannot fill the disk. */
const SHARED_TREE_LIMIT = 1024 * 1024 * 1024

/**
 * The receiving side. A peer's ssh login runs the forced command, which asks
 * us (over `socket`) whether this peer may push this tree now: only if a
 * signed `sync-push` event from that peer named it (`grant`). rsync then
 * writes into a staging mirror owned by the sync account; on `commit` we
 * check the staged tree (forbidden entries, quota) and merge it into the
 * live tree as root, owned by the tree's owner. A refusal changes nothing
 * and goes back to the pushing peer as the forced command's error.
 */
export class SyncReceiver {
  private server: Server | null = null
  private readonly grants = new Map<string, Grant[]>()
  private readonly waiters = new Map<string, Waiter[]>()
  private readonly busy = new Set<string>()

  constructor (private readonly init: SyncReceiverInit, private readonly c: SyncReceiverComponents) {}

  async start (): Promise<void> {
    if (this.server !== null) return
    await mkdir(this.init.spoolDir, { recursive: true, mode: 0o700 })
    await chown(this.init.spoolDir, this.init.syncUid, this.init.syncGid)
    this.server = await listenUnix(this.init.socket, 0o660, (s) => { this.accept(s) })
    await chown(this.init.socket, 0, this.init.syncGid)
  }

  async stop (): Promise<void> {
    const s = this.server
    if (s === null) return
    this.server = null
    await new Promise<void>((resolve) => s.close(() => resolve()))
    await rm(this.init.socket, { force: true })
  }

  /** A verified sync-push event from `peer`: allow one push of `tree`. */
  grant (peer: string, tree: string, push: string, manifest: PushManifest, bytes = 0, ttlMs = 60_000): void {
    const key = `${peer} ${tree} ${push}`
    const g: Grant = { push, manifest, bytes, exp: Date.now() + ttlMs }
    const w = this.waiters.get(key)?.shift()
    if (w !== undefined) { w.resolve(g); return }
    const now = Date.now()
    for (const [k, x] of this.grants) if ((x[0]?.exp ?? 0) <= now) this.grants.delete(k)
    if (this.grants.size < 10_000) this.grants.set(key, [g])
  }

  /** The grant of exactly this push (named in the rsync destination); waits a little for the event. */
  private async takeGrant (peer: string, tree: string, push: string | null): Promise<Grant> {
    if (push === null) throw new SyncNotAuthorizedError(`push of ${tree} by peer ${peer} refused: it names no sync-push event (destination must end in /.push-<id>/)`)
    const key = `${peer} ${tree} ${push}`
    const g = this.grants.get(key)?.[0]
    this.grants.delete(key)
    if (g !== undefined && g.exp > Date.now()) return g
    const waitMs = this.init.grantWaitMs ?? 10_000
    return await new Promise<Grant>((resolve, reject) => {
      const w: Waiter = { resolve: (x) => { clearTimeout(t); resolve(x) } }
      const t = setTimeout(() => {
        const ws = this.waiters.get(key) ?? []
        this.waiters.set(key, ws.filter((x) => x !== w))
        reject(new SyncNotAuthorizedError(`push of ${tree} by peer ${peer} refused: no signed sync-push event named it within ${waitMs} ms`))
      }, waitMs)
      this.waiters.set(key, [...(this.waiters.get(key) ?? []), w])
    })
  }

  private accept (sock: Socket): void {
    let session: { peer: string, tree: string, staging: string, grant: Grant } | null = null
    let released = false
    const release = (): void => {
      if (session !== null && !released) { released = true; this.busy.delete(`${session.peer} ${session.tree}`) }
    }
    sock.on('error', () => {})
    sock.on('close', release)
    const reply = (msg: unknown): void => { writeLine(sock, msg) }
    const fail = (err: unknown, peer: string, tree: string): void => {
      const e = toWireError(err)
      this.c.logger.warn({ peer, tree, code: e.code, err: e.message }, 'sync push refused')
      this.c.onResult({ peer, tree, at: new Date(), ok: false, error: { code: e.code, message: e.message } })
      reply({ error: e })
    }
    onLines(sock, 64 * 1024, (msg) => {
      const m = msg as { op?: string, peer?: string, command?: string, status?: number }
      if (m?.op === 'begin' && session === null) {
        const peer = String(m.peer)
        this.begin(peer, m.command).then((s) => { session = s; reply({ argv: s.argv }) }, (err) => { fail(err, peer, (err as { tree?: string }).tree ?? '?') })
      } else if (m?.op === 'commit' && session !== null) {
        const s = session
        this.commit(s.peer, s.tree, s.staging, s.grant).then((report) => {
          release()
          this.c.onResult({ peer: s.peer, tree: s.tree, at: new Date(), ok: true, report })
          this.c.logger.info({ peer: s.peer, tree: s.tree, written: report.written.length, deleted: report.deleted.length, conflicts: report.conflicts.length }, 'sync push applied')
          reply({ report: { written: report.written.length, deleted: report.deleted.length, conflicts: report.conflicts.length } })
        }, (err) => { release(); fail(err, s.peer, s.tree) })
      } else {
        reply({ error: { name: 'BadRequestError', code: 'bad-request', message: 'expected begin, then commit' } })
        sock.end()
      }
    }, () => { sock.destroy() })
  }

  private async begin (peer: string, command: unknown): Promise<{ peer: string, tree: string, staging: string, grant: Grant, argv: string[] }> {
    if (this.c.peerDomain(peer) === undefined) throw new SyncNotAuthorizedError(`push from ${peer}, which is not an active peer`)
    const spool = join(this.init.spoolDir, peer)
    const allowed = validateForcedCommand(typeof command === 'string' ? command : undefined, {
      root: this.init.root,
      stagingFor: (tree) => join(spool, treeSlug(tree))
    })
    const tree = allowed.tree
    const key = `${peer} ${tree}`
    if (this.busy.has(key)) throw new SyncRefusedError(`a push of ${tree} by ${peer} is already running`)
    this.busy.add(key)
    try {
      const grant = await this.takeGrant(peer, tree, allowed.push)
      await this.ownerOf(tree)
      const limit = this.limitFor(tree)
      // the signed announcement says how big the tree is: refuse before a byte moves (the staged check still runs)
      if (grant.bytes > limit) throw new QuotaExceededError(`incoming tree refused: ${tree} is ${grant.bytes} bytes, over the quota of ${limit} bytes; copy here unchanged`, { detail: { bytes: grant.bytes, limit } })
      const staging = join(spool, treeSlug(tree))
      for (const d of [spool, staging]) {
        await mkdir(d, { recursive: true, mode: 0o700 })
        await chown(d, this.init.syncUid, this.init.syncGid)
      }
      // our own cap on each file, whatever --max-size the sender asked for
      const argv = allowed.argv.filter((a) => !a.startsWith('--max-size='))
      argv.splice(2, 0, `--max-size=${limit}`)
      return { peer, tree, staging, grant, argv }
    } catch (err) {
      this.busy.delete(key)
      if (typeof err === 'object' && err !== null) Object.assign(err, { tree })
      throw err
    }
  }

  private limitFor (tree: string): number {
    return tree.startsWith('users/') ? this.init.userLimitBytes : SHARED_TREE_LIMIT
  }

  private async ownerOf (tree: string): Promise<{ dir: string, uid: number, gid: number }> {
    const dir = join(this.init.root, tree)
    const st = await lstat(dir).catch(() => null)
    if (st === null || !st.isDirectory()) throw new SyncRefusedError(`${tree} does not exist on this peer yet (its account is not applied here)`)
    if (tree.startsWith('users/') && st.uid === 0) throw new SyncRefusedError(`${tree} is owned by root here; a user tree must be owned by its user`)
    return { dir, uid: st.uid, gid: st.gid }
  }

  private async commit (peer: string, tree: string, staging: string, grant: Grant): Promise<MergeReport> {
    const limit = this.limitFor(tree)
    return await this.c.locks.with(tree, async () => {
      const { dir, uid, gid } = await this.ownerOf(tree)
      const scan = await checkIncoming(staging, limit)
      const state = await this.c.states.get(tree)
      const snapshot = JSON.stringify(state)
      try {
        const report = await mergeIncoming(staging, dir, uid, gid, {
          state, manifest: grant.manifest, peer: this.c.peerDomain(peer) ?? peer, self: this.c.selfDomain, scan, limitBytes: limit
        })
        await this.c.states.save(tree)
        return report
      } catch (err) {
        // nothing was applied (refusals happen before any write): forget the half-updated history
        Object.assign(state, JSON.parse(snapshot))
        if (!(err instanceof CenterError)) this.c.logger.error({ err, peer, tree }, 'sync merge failed')
        throw err
      }
    })
  }
}
