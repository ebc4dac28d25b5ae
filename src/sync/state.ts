import { createHash, randomBytes } from 'node:crypto'
import { constants as C } from 'node:fs'
import { mkdir, open, readFile, rename } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { ScanResult, TreeEntry } from './tree.js'

/**
 * Per-tree version history, kept by every peer outside the tree
 * (`<stateDir>/sync/trees/<slug>.json`, mode 0600): for each file, the ids
 * of its last versions (newest first) and the peer that made the newest.
 *
 * A push carries the history of what changed, so the receiver can tell a
 * fast-forward (its version is in the sender's history: take the new one)
 * from a peer that is behind (the sender's version is in its own history:
 * keep) and from a real conflict (neither: keep both).
 */
export interface FileVersion {
  /** version ids, newest first, at most CHAIN_MAX */
  c: string[]
  /** domain of the peer that made the newest version */
  b: string
}

export interface TreeState {
  version: 2
  files: Record<string, FileVersion>
  /** files and directories deleted here (or applied as deleted), with when (ms) */
  deleted: Record<string, FileVersion & { at: number }>
}

export const CHAIN_MAX = 8
const TOMBSTONE_MS = 30 * 24 * 3600_000
/** directories are versioned by this constant id: only their existence matters */
export const DIR_ID = 'dir'

/** A short, stable id for an entry's content: 96 bits of sha256 over the scan hash. */
export function versionId (e: Pick<TreeEntry, 'kind' | 'hash'>): string {
  if (e.kind === 'dir') return DIR_ID
  return createHash('sha256').update(e.hash).digest('hex').slice(0, 24)
}

export const emptyState = (): TreeState => ({ version: 2, files: {}, deleted: {} })

export async function loadTreeState (file: string): Promise<TreeState> {
  try {
    const raw = JSON.parse(await readFile(file, 'utf8')) as TreeState
    if (raw.version !== 2 || typeof raw.files !== 'object' || typeof raw.deleted !== 'object') return emptyState()
    return raw
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState()
    throw err
  }
}

export async function saveTreeState (file: string, state: TreeState): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 })
  const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`
  const fh = await open(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600)
  try {
    await fh.writeFile(JSON.stringify(state))
    await fh.sync()
  } finally { await fh.close() }
  await rename(tmp, file)
}

export const push = (chain: string[], id: string): string[] => [id, ...chain.filter((x) => x !== id)].slice(0, CHAIN_MAX)

/**
 * Fold a scan of the live tree into the history: a content that differs
 * from the newest known version is a local edit (made by `self`); a known
 * entry missing from the scan was deleted here. Returns whether anything
 * changed (i.e. there is something of our own to push).
 */
export function reconcileLocal (state: TreeState, scan: ScanResult, self: string, now = Date.now()): boolean {
  let changed = false
  const seen = new Set<string>()
  for (const e of scan.entries) {
    seen.add(e.path)
    const id = versionId(e)
    const known = state.files[e.path]
    if (known !== undefined && known.c[0] === id) continue
    const tomb = state.deleted[e.path]
    const base = known?.c ?? tomb?.c ?? []
    state.files[e.path] = { c: push(base, id), b: self }
    delete state.deleted[e.path]
    changed = true
  }
  for (const [p, v] of Object.entries(state.files)) {
    if (seen.has(p)) continue
    state.deleted[p] = { ...v, at: now }
    delete state.files[p]
    changed = true
  }
  for (const [p, t] of Object.entries(state.deleted)) if (now - t.at > TOMBSTONE_MS) delete state.deleted[p]
  return changed
}

/** What a push tells the receiver: histories for entries, and what we deleted. */
export interface PushManifest {
  files: Record<string, FileVersion>
  deleted: Record<string, FileVersion>
}

/**
 * The histories the receiver may need, within `maxBytes` of JSON: first the
 * entries that changed since our last push to that peer, then deletions.
 * What does not fit is left out: the receiver then treats the version as
 * new, which at worst makes a conflict copy, never loses data.
 */
export function manifestFor (state: TreeState, lastPushed: Record<string, string> | null, maxBytes: number): PushManifest {
  const m: PushManifest = { files: {}, deleted: {} }
  let size = 40
  const add = (bucket: Record<string, FileVersion>, p: string, v: FileVersion): boolean => {
    const entry = { c: v.c, b: v.b }
    const n = JSON.stringify(p).length + JSON.stringify(entry).length + 2
    if (size + n > maxBytes) return false
    bucket[p] = entry
    size += n
    return true
  }
  for (const [p, v] of Object.entries(state.files)) {
    if (v.c[0] === DIR_ID) continue
    if (lastPushed !== null && lastPushed[p] === v.c[0]) continue
    if (!add(m.files, p, v)) break
  }
  const dels = Object.entries(state.deleted).sort((a, b) => b[1].at - a[1].at)
  for (const [p, v] of dels) if (!add(m.deleted, p, v)) break
  return m
}

/** Parse a manifest from an event; anything malformed is dropped, not trusted. */
export function checkManifest (raw: unknown): PushManifest {
  const out: PushManifest = { files: {}, deleted: {} }
  const r = raw as { files?: unknown, deleted?: unknown }
  for (const key of ['files', 'deleted'] as const) {
    const src = r?.[key]
    if (typeof src !== 'object' || src === null) continue
    for (const [p, v] of Object.entries(src as Record<string, unknown>)) {
      const fv = v as { c?: unknown, b?: unknown }
      if (!Array.isArray(fv?.c) || fv.c.length === 0 || fv.c.length > CHAIN_MAX) continue
      if (!fv.c.every((x) => typeof x === 'string' && /^([0-9a-f]{24}|dir)$/.test(x))) continue
      if (typeof fv.b !== 'string' || !/^[a-z0-9.-]{1,253}$/i.test(fv.b)) continue
      out[key][p] = { c: fv.c as string[], b: fv.b }
    }
  }
  return out
}
