import { createHash, randomBytes } from 'node:crypto'
import { constants as C } from 'node:fs'
import { chmod, lchown, lstat, mkdir, open, readFile, readdir, readlink, realpath, rename, rm, rmdir, symlink } from 'node:fs/promises'
import { dirname, isAbsolute, join, posix } from 'node:path'
import { QuotaExceededError } from '../quota/errors.js'
import { assertId, assertSafePath, assertUserName } from '../quota/validate.js'
import { ForbiddenEntryError, StagingChangedError, UnsafePathError } from './errors.js'

export type EntryKind = 'file' | 'dir' | 'symlink'

export interface TreeEntry {
  /** relative to the scanned root, `/`-separated, never empty */
  path: string
  kind: EntryKind
  /** bytes for files; 0 for dirs and symlinks */
  size: number
  /** permission bits (& 0o7777) */
  mode: number
  mtimeMs: number
  /** sha256 hex of the content for files, `link:<target>` for symlinks, '' for dirs or when not hashed */
  hash: string
  /** symlink target */
  target?: string
}

export type ForbiddenReason = 'device' | 'fifo' | 'socket' | 'setuid' | 'setgid' | 'symlink-absolute' |
'symlink-escape' | 'symlink-through-symlink' | 'hardlink' | 'bad-name' | 'too-many-entries'

export interface ForbiddenEntry { path: string, reason: ForbiddenReason }

export interface ScanResult {
  entries: TreeEntry[]
  forbidden: ForbiddenEntry[]
  /** sum of regular file sizes (apparent bytes) */
  totalBytes: number
  /** totalBytes went past maxBytes; hashing stopped there */
  overLimit: boolean
}

export interface ScanOptions {
  /** stop hashing (and set overLimit) once the files add up to more than this */
  maxBytes?: number
  /** @default 100_000 */
  maxEntries?: number
  /** flag regular files with more than one link (rsync without -H never makes them) */
  refuseHardlinks?: boolean
}

/** Names the sync machinery itself uses inside a tree; never synced, never counted. */
export const PARTIAL_DIR = '.center-partial'
export const TMP_PREFIX = '.center-tmp-'
const isInternal = (name: string): boolean => name === PARTIAL_DIR || name === '.~tmp~' || name.startsWith(TMP_PREFIX)

/** `<root>/users/<name>` after validating both; the only way sync names a user tree. */
export function userTreeOf (root: string, name: string): string {
  assertSafePath(root)
  assertUserName(name)
  return join(root, 'users', name)
}

/**
 * Walk a tree with lstat only (symlinks are never followed), in a stable
 * order with every directory before its contents. Entries that must never
 * be synced are listed in `forbidden` and left out of `entries`.
 */
export async function scanTree (dir: string, opts: ScanOptions = {}): Promise<ScanResult> {
  const maxBytes = opts.maxBytes ?? Number.POSITIVE_INFINITY
  const maxEntries = opts.maxEntries ?? 100_000
  const top = await lstat(dir)
  if (!top.isDirectory()) throw new UnsafePathError(`${dir} is not a directory (symlinks are not followed)`)
  const res: ScanResult = { entries: [], forbidden: [], totalBytes: 0, overLimit: false }
  const queue: string[] = ['']
  let seen = 0
  while (queue.length > 0) {
    const rel = queue.shift() as string
    const names = (await readdir(join(dir, rel))).sort()
    for (const name of names) {
      if (isInternal(name)) continue
      const p = rel === '' ? name : `${rel}/${name}`
      if (++seen > maxEntries) {
        res.forbidden.push({ path: p, reason: 'too-many-entries' })
        return res
      }
      // eslint-disable-next-line no-control-regex
      if (/[\x00-\x1f\x7f]/.test(name)) { res.forbidden.push({ path: p, reason: 'bad-name' }); continue }
      const st = await lstat(join(dir, p))
      const mode = st.mode & 0o7777
      const bad = kindProblem(st)
      if (bad !== null) { res.forbidden.push({ path: p, reason: bad }); continue }
      if ((mode & 0o4000) !== 0) { res.forbidden.push({ path: p, reason: 'setuid' }); continue }
      if ((mode & 0o2000) !== 0) { res.forbidden.push({ path: p, reason: 'setgid' }); continue }
      const base = { path: p, mode, mtimeMs: st.mtimeMs }
      if (st.isDirectory()) {
        res.entries.push({ ...base, kind: 'dir', size: 0, hash: '' })
        queue.push(p)
      } else if (st.isSymbolicLink()) {
        const target = await readlink(join(dir, p))
        const why = await symlinkProblem(dir, p, target)
        if (why !== null) { res.forbidden.push({ path: p, reason: why }); continue }
        res.entries.push({ ...base, kind: 'symlink', size: 0, hash: `link:${target}`, target })
      } else {
        if (opts.refuseHardlinks === true && st.nlink > 1) { res.forbidden.push({ path: p, reason: 'hardlink' }); continue }
        res.totalBytes += st.size
        if (res.totalBytes > maxBytes) res.overLimit = true
        const hash = res.overLimit ? '' : await hashNoFollow(join(dir, p))
        res.entries.push({ ...base, kind: 'file', size: st.size, hash })
      }
    }
  }
  return res
}

function kindProblem (st: { isBlockDevice: () => boolean, isCharacterDevice: () => boolean, isFIFO: () => boolean, isSocket: () => boolean }): ForbiddenReason | null {
  if (st.isBlockDevice() || st.isCharacterDevice()) return 'device'
  if (st.isFIFO()) return 'fifo'
  if (st.isSocket()) return 'socket'
  return null
}

/**
 * A symlink may only point inside its tree, judged on the path as written:
 * no absolute target, no `..` climbing above the root, and no step through
 * another symlink (which the kernel would resolve first, so `a/..` could
 * mean anything).
 */
async function symlinkProblem (root: string, rel: string, target: string): Promise<ForbiddenReason | null> {
  if (target === '' || isAbsolute(target)) return 'symlink-absolute'
  const stack = posix.dirname(rel) === '.' ? [] : posix.dirname(rel).split('/')
  const parts = target.split('/').filter((c) => c !== '' && c !== '.')
  for (let i = 0; i < parts.length; i++) {
    const c = parts[i] as string
    if (c === '..') {
      if (stack.length === 0) return 'symlink-escape'
      stack.pop()
      continue
    }
    stack.push(c)
    if (i < parts.length - 1) {
      try {
        if ((await lstat(join(root, ...stack))).isSymbolicLink()) return 'symlink-through-symlink'
      } catch { /* missing: the link dangles, which is harmless */ }
    }
  }
  return null
}

/**
 * Refuse an incoming (staged) tree before anything is moved into place:
 * forbidden entries first, then size against the user's limit.
 */
export async function checkIncoming (stagingDir: string, limitBytes: number): Promise<ScanResult> {
  const scan = await scanTree(stagingDir, { maxBytes: limitBytes, refuseHardlinks: true })
  if (scan.forbidden.length > 0) {
    const list = scan.forbidden.slice(0, 5).map((f) => `${f.path} (${f.reason})`).join(', ')
    throw new ForbiddenEntryError(`incoming tree refused: ${scan.forbidden.length} forbidden entr${scan.forbidden.length === 1 ? 'y' : 'ies'}: ${list}`, { detail: { forbidden: scan.forbidden.slice(0, 50) } })
  }
  if (scan.overLimit) {
    throw new QuotaExceededError(`incoming tree refused: ${scan.totalBytes} bytes is over the quota of ${limitBytes} bytes`, { detail: { bytes: scan.totalBytes, limit: limitBytes } })
  }
  return scan
}

// ---------------------------------------------------------------- sync state

/**
 * What this tree last agreed with the network: path → hash of the version
 * both sides had. Kept outside the tree (e.g. /var/lib/center/sync/users-alice.json)
 * so users can neither see nor forge it and it is never synced.
 */
export interface SyncState { version: 1, files: Record<string, string>, dirs: string[] }

export async function loadState (stateFile: string): Promise<SyncState> {
  try {
    const raw = JSON.parse(await readFile(stateFile, 'utf8')) as SyncState
    if (raw.version !== 1 || typeof raw.files !== 'object' || !Array.isArray(raw.dirs)) throw new Error('bad state file')
    return { version: 1, files: { ...raw.files }, dirs: [...raw.dirs] }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, files: {}, dirs: [] }
    throw err
  }
}

export async function saveState (stateFile: string, state: SyncState): Promise<void> {
  await mkdir(dirname(stateFile), { recursive: true, mode: 0o700 })
  const tmp = `${stateFile}.tmp-${randomBytes(6).toString('hex')}`
  const fh = await open(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600)
  try {
    await fh.writeFile(JSON.stringify(state))
    await fh.sync()
  } finally { await fh.close() }
  await rename(tmp, stateFile)
}

/** After a successful push, the receiver has exactly our tree: record it as agreed. */
export async function recordAgreed (stateFile: string, scan: ScanResult): Promise<void> {
  const state: SyncState = { version: 1, files: {}, dirs: [] }
  for (const e of scan.entries) {
    if (e.kind === 'dir') state.dirs.push(e.path)
    else state.files[e.path] = e.hash
  }
  await saveState(stateFile, state)
}

// ---------------------------------------------------------------- apply

export interface ApplyOptions {
  /** the per-tree state file (see SyncState) */
  stateFile: string
  /** domain of the peer that sent the tree; names conflict copies */
  peer: string
  /** refuse if the tree after the merge (incl. kept local files and conflict copies) is over this */
  limitBytes?: number
  /** a scan from checkIncoming; rescanned (and rechecked) when absent */
  scan?: ScanResult
  now?: Date
}

export interface ApplyReport {
  written: string[]
  deleted: string[]
  /** conflict copies made: `path` kept the local version, `copy` holds the peer's */
  conflicts: Array<{ path: string, copy: string }>
  /** incoming entries not applied, with why */
  skipped: Array<{ path: string, reason: string }>
}

/** One change to a live tree, planned first and carried out by runOps once the whole plan passed its checks. */
export type ApplyOp =
  | { op: 'mkdir', e: TreeEntry }
  | { op: 'put', e: TreeEntry, as: string }
  | { op: 'move', from: string, to: string }
  | { op: 'delete', path: string, kind: EntryKind }

const PEER = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/i

/** `notes.txt.conflict-<peer>-<YYYYMMDDTHHMMSS>` (UTC), unique among `taken`. */
export function conflictName (path: string, peer: string, now: Date, taken: (p: string) => boolean): string {
  if (!PEER.test(peer)) throw new UnsafePathError(`bad peer domain ${JSON.stringify(peer)}`)
  const ts = now.toISOString().replace(/[-:]/g, '').slice(0, 15)
  const first = `${path}.conflict-${peer}-${ts}`
  let name = first
  for (let n = 2; taken(name); n++) name = `${first}-${n}`
  return name
}

/**
 * Merge a checked staging tree into the live tree, as root on behalf of the
 * user: every file is written to a temp file in its final directory and
 * renamed into place, owned by uid:gid. Before each write the parent is
 * re-checked to be a real directory inside targetDir (no symlinked parents).
 *
 * Against the last agreed version (the state file):
 * - local unchanged, remote changed → take the remote version;
 * - local changed, remote unchanged → keep local (the peer is behind);
 * - both changed → keep local and add the peer's version as a conflict copy;
 * - gone remotely and unchanged locally → delete; changed locally → keep.
 * Nothing is touched when the merged tree would be over limitBytes.
 */
export async function applyTree (stagingDir: string, targetDir: string, uid: number, gid: number, opts: ApplyOptions): Promise<ApplyReport> {
  assertId('uid', uid)
  assertId('gid', gid)
  const incoming = opts.scan ?? await checkIncoming(stagingDir, opts.limitBytes ?? Number.POSITIVE_INFINITY)
  const tst = await lstat(targetDir)
  if (!tst.isDirectory()) throw new UnsafePathError(`target ${targetDir} is not a directory`)
  const realTarget = await realpath(targetDir)
  const state = await loadState(opts.stateFile)
  const local = await scanTree(realTarget, {})
  const localMap = new Map(local.entries.map((e) => [e.path, e]))
  // local entries sync would refuse (a user's own fifo, a link to /etc...) still occupy their name
  for (const f of local.forbidden) localMap.set(f.path, { path: f.path, kind: 'symlink', size: 0, mode: 0, mtimeMs: 0, hash: `local-${f.reason}` })
  const inMap = new Map(incoming.entries.map((e) => [e.path, e]))
  const now = opts.now ?? new Date()
  const report: ApplyReport = { written: [], deleted: [], conflicts: [], skipped: [] }
  const ops: ApplyOp[] = []
  const skippedDirs: string[] = []
  const under = (p: string, d: string): boolean => p.startsWith(`${d}/`)
  const final = new Map<string, number>(local.entries.filter((e) => e.kind === 'file').map((e) => [e.path, e.size]))
  const taken = (p: string): boolean => localMap.has(p) || inMap.has(p) || final.has(p)
  const newState: SyncState = { version: 1, files: { ...state.files }, dirs: [] }

  for (const e of incoming.entries) {
    if (skippedDirs.some((d) => under(e.path, d))) { report.skipped.push({ path: e.path, reason: 'parent is not a directory here' }); continue }
    const l = localMap.get(e.path)
    if (e.kind === 'dir') {
      if (l === undefined) ops.push({ op: 'mkdir', e })
      else if (l.kind !== 'dir') { skippedDirs.push(e.path); report.skipped.push({ path: e.path, reason: `a ${l.kind} is here` }) }
      continue
    }
    const agreed = state.files[e.path]
    newState.files[e.path] = e.hash
    if (l === undefined || (l.kind !== 'dir' && l.hash !== e.hash && agreed === l.hash)) {
      ops.push({ op: 'put', e, as: e.path })
      final.set(e.path, e.size)
    } else if (l.kind !== 'dir' && (l.hash === e.hash || agreed === e.hash)) {
      // same content, or the peer is behind: keep ours
    } else {
      const copy = conflictName(e.path, opts.peer, now, taken)
      ops.push({ op: 'put', e, as: copy })
      final.set(copy, e.size)
      newState.files[copy] = e.hash
      report.conflicts.push({ path: e.path, copy })
    }
  }
  for (const l of [...local.entries].reverse()) {
    if (inMap.has(l.path) || skippedDirs.some((d) => l.path === d || under(l.path, d))) continue
    if (l.kind === 'dir') {
      if (!state.dirs.includes(l.path)) continue
      const kept = local.entries.some((c) => under(c.path, l.path) && !ops.some((o) => o.op === 'delete' && o.path === c.path))
      if (!kept) ops.push({ op: 'delete', path: l.path, kind: 'dir' })
    } else if (state.files[l.path] !== undefined && state.files[l.path] === l.hash) {
      ops.push({ op: 'delete', path: l.path, kind: l.kind })
      final.delete(l.path)
      delete newState.files[l.path]
    }
  }
  const projected = [...final.values()].reduce((a, b) => a + b, 0)
  if (opts.limitBytes !== undefined && projected > opts.limitBytes) {
    throw new QuotaExceededError(`merged tree would be ${projected} bytes, over the quota of ${opts.limitBytes} bytes; nothing applied`, { detail: { bytes: projected, limit: opts.limitBytes } })
  }

  await runOps(realTarget, stagingDir, ops, uid, gid, report)
  for (const e of incoming.entries) if (e.kind === 'dir' && !skippedDirs.some((d) => e.path === d || under(e.path, d))) newState.dirs.push(e.path)
  await saveState(opts.stateFile, newState)
  return report
}

/**
 * Carry out a checked plan inside realTarget: every path through safeParent
 * (no symlinked component), files and links from the staging copy, owned by
 * uid:gid. Fills report.written / report.deleted.
 */
export async function runOps (realTarget: string, stagingDir: string, ops: ApplyOp[], uid: number, gid: number, report: { written: string[], deleted: string[] }): Promise<void> {
  for (const o of ops) {
    if (o.op === 'mkdir') {
      const { parent, base } = await safeParent(realTarget, o.e.path)
      const abs = join(parent, base)
      await mkdir(abs, { mode: 0o700 })
      await lchown(abs, uid, gid)
      await chmod(abs, (o.e.mode & 0o777) | 0o700)
      report.written.push(o.e.path)
    } else if (o.op === 'put') {
      const { parent, base } = await safeParent(realTarget, o.as)
      if (o.e.kind === 'symlink') await putSymlink(parent, base, o.e.target as string, uid, gid)
      else await putFile(parent, base, await readStaged(stagingDir, o.e), o.e, uid, gid)
      if (o.as === o.e.path) report.written.push(o.e.path)
    } else if (o.op === 'move') {
      const a = await safeParent(realTarget, o.from)
      const b = await safeParent(realTarget, o.to)
      await rename(join(a.parent, a.base), join(b.parent, b.base))
    } else {
      const { parent, base } = await safeParent(realTarget, o.path)
      if (o.kind === 'dir') await rmdir(join(parent, base)).catch(() => {})
      else await rm(join(parent, base), { force: true })
      report.deleted.push(o.path)
    }
  }
}

/**
 * The real, symlink-free parent directory of `rel` inside realTarget. Each
 * component is lstat'ed (a symlink or non-directory is refused) and the
 * realpath of the result must be exactly where it should be.
 */
export async function safeParent (realTarget: string, rel: string): Promise<{ parent: string, base: string }> {
  const parts = rel.split('/')
  if (parts.some((c) => c === '' || c === '.' || c === '..')) throw new UnsafePathError(`bad relative path ${JSON.stringify(rel)}`)
  const base = parts.pop() as string
  let cur = realTarget
  for (const c of parts) {
    cur = join(cur, c)
    const st = await lstat(cur)
    if (!st.isDirectory()) throw new UnsafePathError(`${cur} is not a real directory; refusing to write under it`)
  }
  const real = await realpath(cur)
  if (real !== cur) throw new UnsafePathError(`${cur} resolves to ${real}, outside the tree`)
  return { parent: cur, base }
}

/** sha256 of a regular file, read in 64 KiB pieces (a scan must not hold whole files in memory). */
export async function hashNoFollow (abs: string): Promise<string> {
  const fh = await open(abs, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK)
  try {
    if (!(await fh.stat()).isFile()) throw new UnsafePathError(`${abs} is not a regular file`)
    const h = createHash('sha256')
    const buf = Buffer.allocUnsafe(64 * 1024)
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null)
      if (bytesRead === 0) break
      h.update(buf.subarray(0, bytesRead))
    }
    return h.digest('hex')
  } finally { await fh.close() }
}

export async function readNoFollow (abs: string): Promise<Buffer> {
  const fh = await open(abs, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK)
  try {
    if (!(await fh.stat()).isFile()) throw new UnsafePathError(`${abs} is not a regular file`)
    return await fh.readFile()
  } finally { await fh.close() }
}

/** Read a staged file and make sure it is still what checkIncoming saw. */
export async function readStaged (stagingDir: string, e: TreeEntry): Promise<Buffer> {
  const data = await readNoFollow(join(stagingDir, e.path))
  if (sha256(data) !== e.hash) throw new StagingChangedError(`staged file ${e.path} changed after it was checked`)
  return data
}

export async function putFile (parent: string, base: string, data: Buffer, e: TreeEntry, uid: number, gid: number): Promise<void> {
  const tmp = join(parent, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`)
  const fh = await open(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600)
  try {
    try {
      await fh.writeFile(data)
      await fh.chown(uid, gid)
      await fh.chmod(e.mode & 0o777)
      const t = new Date(e.mtimeMs)
      await fh.utimes(t, t)
      await fh.sync()
    } finally { await fh.close() }
    await rename(tmp, join(parent, base))
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

export async function putSymlink (parent: string, base: string, target: string, uid: number, gid: number): Promise<void> {
  const tmp = join(parent, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`)
  await symlink(target, tmp)
  try {
    await lchown(tmp, uid, gid)
    await rename(tmp, join(parent, base))
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
