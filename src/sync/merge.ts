import { lstat, realpath } from 'node:fs/promises'
import { QuotaExceededError } from '../quota/errors.js'
import { UnsafePathError } from './errors.js'
import { CHAIN_MAX, DIR_ID, push, reconcileLocal, versionId, type FileVersion, type PushManifest, type TreeState } from './state.js'
import { conflictName, runOps, scanTree, type ApplyOp, type ScanResult, type TreeEntry } from './tree.js'

export interface MergeOptions {
  /** this tree's history here; updated in place (the caller saves it) */
  state: TreeState
  /** what the sender's signed sync-push said about its versions */
  manifest: PushManifest
  /** domain of the sending peer (a version with no history is taken as made by it) */
  peer: string
  /** our own domain (local edits not yet in the history are ours) */
  self: string
  /** the checked staging scan (checkIncoming) */
  scan: ScanResult
  limitBytes?: number
}

export interface MergeReport {
  written: string[]
  deleted: string[]
  /** `path` holds the winning version; `copy` the other one, named after the peer that made it */
  conflicts: Array<{ path: string, copy: string }>
  skipped: Array<{ path: string, reason: string }>
}

/** Which of two concurrent versions keeps the name: the same answer on every peer. */
function firstWins (a: { b: string, id: string }, b: { b: string, id: string }): boolean {
  return a.b !== b.b ? a.b < b.b : a.id < b.id
}

/**
 * Merge a checked staging tree (what `peer` has) into the live tree, as
 * root on behalf of its owner (uid:gid). Per file, against the histories:
 * - our version is in the sender's history → take theirs (fast-forward);
 * - theirs is in our history → keep ours (the sender is behind);
 * - neither → a conflict: both survive. The version made by the peer whose
 *   domain sorts first keeps the name, the other becomes
 *   `name.conflict-<its peer>-<its mtime>`, so every peer picks the same
 *   names and converges;
 * - a file we have and the sender lacks is deleted only if the sender says
 *   it deleted exactly our version; a file the sender has that we deleted
 *   comes back only if it is a newer version than the one we deleted.
 * Every write is a temp file + rename (tree.ts putFile). Nothing is touched
 * when the merged tree would be over limitBytes.
 */
export async function mergeIncoming (stagingDir: string, targetDir: string, uid: number, gid: number, o: MergeOptions): Promise<MergeReport> {
  // root-owned trees (shared/, proposals/) are allowed here; the receiver refuses uid 0 for users/*
  for (const [k, v] of [['uid', uid], ['gid', gid]] as const) if (!Number.isSafeInteger(v) || v < 0 || v >= 2 ** 31) throw new UnsafePathError(`bad ${k} ${v}`)
  const tst = await lstat(targetDir)
  if (!tst.isDirectory()) throw new UnsafePathError(`target ${targetDir} is not a directory`)
  const real = await realpath(targetDir)
  const local = await scanTree(real, {})
  // bring local edits the watcher has not folded in yet into the history first
  reconcileLocal(o.state, local, o.self)
  const localMap = new Map<string, TreeEntry>(local.entries.map((e) => [e.path, e]))
  const occupied = new Set<string>([...localMap.keys(), ...local.forbidden.map((f) => f.path)])
  const inMap = new Map(o.scan.entries.map((e) => [e.path, e]))
  const report: MergeReport = { written: [], deleted: [], conflicts: [], skipped: [] }
  const ops: ApplyOp[] = []
  const skippedDirs: string[] = []
  const under = (p: string, d: string): boolean => p === d || p.startsWith(`${d}/`)
  const sizes = new Map<string, number>(local.entries.filter((e) => e.kind === 'file').map((e) => [e.path, e.size]))
  const taken = (p: string): boolean => occupied.has(p) || inMap.has(p) || sizes.has(p)
  const st = o.state

  for (const e of o.scan.entries) {
    if (skippedDirs.some((d) => under(e.path, d))) { report.skipped.push({ path: e.path, reason: 'parent is not a directory here' }); continue }
    const l = localMap.get(e.path)
    if (e.kind === 'dir') {
      if (l === undefined && local.forbidden.some((f) => f.path === e.path)) { skippedDirs.push(e.path); report.skipped.push({ path: e.path, reason: 'a special file is here' }); continue }
      if (l === undefined) {
        const tomb = st.deleted[e.path]
        // we removed this directory and the sender has nothing new in it: stay removed
        if (tomb !== undefined && !o.scan.entries.some((c) => c.path.startsWith(`${e.path}/`) && c.kind !== 'dir')) { skippedDirs.push(e.path); continue }
        ops.push({ op: 'mkdir', e })
        st.files[e.path] = { c: [DIR_ID], b: o.peer }
        delete st.deleted[e.path]
      } else if (l.kind !== 'dir') { skippedDirs.push(e.path); report.skipped.push({ path: e.path, reason: `a ${l.kind} is here` }) }
      continue
    }
    const id = versionId(e)
    const m = o.manifest.files[e.path]
    // The sender's signed manifest names the version its scan saw; other bytes
    // mean the file changed while rsync read it (a write still under way).
    // Showing that would show a half-written file: the sender's watcher has
    // seen the change, and its next push brings the finished version.
    if (m !== undefined && m.c[0] !== id) { report.skipped.push({ path: e.path, reason: 'changed on the sender during the transfer' }); continue }
    const theirs: FileVersion = m ?? { c: [id], b: o.peer }
    if (l === undefined) {
      if (occupied.has(e.path)) { report.skipped.push({ path: e.path, reason: 'a special file is here' }); continue }
      const tomb = st.deleted[e.path]
      if (tomb !== undefined && tomb.c.includes(id)) continue // the sender has not seen our delete yet
      ops.push({ op: 'put', e, as: e.path })
      sizes.set(e.path, e.size)
      st.files[e.path] = { c: theirs.c, b: theirs.b }
      delete st.deleted[e.path]
      continue
    }
    if (l.kind === 'dir') { report.skipped.push({ path: e.path, reason: 'a directory is here' }); continue }
    const lid = versionId(l)
    const ours = st.files[e.path] as FileVersion
    if (lid === id) {
      if (theirs.c.length > ours.c.length) st.files[e.path] = { c: theirs.c, b: theirs.b }
      continue
    }
    if (theirs.c.includes(lid)) {
      ops.push({ op: 'put', e, as: e.path })
      sizes.set(e.path, e.size)
      st.files[e.path] = { c: theirs.c, b: theirs.b }
      continue
    }
    if (ours.c.includes(id)) continue // the sender is behind
    // a real conflict: both versions survive, named the same way on every peer
    const incomingWins = firstWins({ b: theirs.b, id }, { b: ours.b, id: lid })
    const loser = incomingWins ? { v: ours, e: l } : { v: theirs, e }
    const copy = conflictName(e.path, loser.v.b, new Date(Math.floor(loser.e.mtimeMs / 1000) * 1000), (p) => taken(p) && !sameAt(p, versionId(loser.e)))
    const copyExists = localMap.get(copy) !== undefined && versionId(localMap.get(copy) as TreeEntry) === versionId(loser.e)
    if (incomingWins) {
      if (!copyExists) ops.push({ op: 'move', from: e.path, to: copy })
      ops.push({ op: 'put', e, as: e.path })
      sizes.set(copy, l.size)
      sizes.set(e.path, e.size)
      st.files[e.path] = { c: push(theirs.c, id).slice(0, CHAIN_MAX), b: theirs.b }
    } else {
      if (!copyExists) ops.push({ op: 'put', e, as: copy })
      sizes.set(copy, e.size)
    }
    st.files[copy] = { c: [versionId(loser.e)], b: loser.v.b }
    report.conflicts.push({ path: e.path, copy })
  }
  function sameAt (p: string, id: string): boolean {
    const x = localMap.get(p) ?? inMap.get(p)
    return x !== undefined && versionId(x) === id
  }

  // deletions the sender made, of exactly the version we have
  for (const l of [...local.entries].reverse()) {
    if (inMap.has(l.path) || skippedDirs.some((d) => under(l.path, d))) continue
    const tomb = o.manifest.deleted[l.path]
    if (tomb === undefined || !tomb.c.includes(versionId(l))) continue
    if (l.kind === 'dir') {
      const keep = local.entries.some((c) => c.path.startsWith(`${l.path}/`) && !ops.some((x) => x.op === 'delete' && x.path === c.path))
      if (keep) continue
    } else {
      sizes.delete(l.path)
    }
    ops.push({ op: 'delete', path: l.path, kind: l.kind })
    const v = st.files[l.path]
    if (v !== undefined) st.deleted[l.path] = { ...v, at: Date.now() }
    delete st.files[l.path]
  }

  const projected = [...sizes.values()].reduce((a, b) => a + b, 0)
  if (o.limitBytes !== undefined && projected > o.limitBytes) {
    throw new QuotaExceededError(`merged tree would be ${projected} bytes, over the quota of ${o.limitBytes} bytes; nothing applied`, { detail: { bytes: projected, limit: o.limitBytes } })
  }

  await runOps(real, stagingDir, ops, uid, gid, report)
  return report
}
