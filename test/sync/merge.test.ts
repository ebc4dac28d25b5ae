import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { mergeIncoming } from '../../src/sync/merge.js'
import { emptyState, manifestFor, reconcileLocal, type TreeState } from '../../src/sync/state.js'
import { checkIncoming, scanTree } from '../../src/sync/tree.js'

// Two boxes as two directories with their histories: "push" = copy A's tree
// into a staging dir and merge it into B with A's manifest (what rsync and
// the sync-push event carry between real peers, tested in live.test.ts).
const skip = process.getuid?.() !== 0 ? 'merges chown to the tree owner: needs root' : false
const UID = 20001

interface Box { name: string, dir: string, state: TreeState }
function box (name: string): Box { return { name: `${name}.test`, dir: mkdtempSync(join(tmpdir(), `cn4-merge-${name}-`)), state: emptyState() } }

async function fold (b: Box): Promise<void> { reconcileLocal(b.state, await scanTree(b.dir), b.name) }

async function pushTo (from: Box, to: Box, duringTransfer?: () => void): Promise<Awaited<ReturnType<typeof mergeIncoming>>> {
  await fold(from)
  // what the sender's scan saw is folded in; a write after it is what rsync then reads
  duringTransfer?.()
  const staging = mkdtempSync(join(tmpdir(), 'cn4-merge-staging-'))
  for (const f of readdirSync(from.dir)) {
    writeFileSync(join(staging, f), readFileSync(join(from.dir, f)))
    const t = new Date(Math.floor(Date.now() / 1000) * 1000 - 5000)
    utimesSync(join(staging, f), t, t)
  }
  try {
    const scan = await checkIncoming(staging, 5 * 1024 * 1024)
    return await mergeIncoming(staging, to.dir, UID, UID, { state: to.state, manifest: manifestFor(from.state, null, 40_000), peer: from.name, self: to.name, scan, limitBytes: 5 * 1024 * 1024 })
  } finally { rmSync(staging, { recursive: true, force: true }) }
}

const files = (b: Box): Record<string, string> => Object.fromEntries(readdirSync(b.dir).sort().map((f) => [f, readFileSync(join(b.dir, f), 'utf8')]))

test('fast-forward, behind, and a real conflict that ends the same on both sides', { skip }, async () => {
  const a = box('a')
  const b = box('b')
  try {
    writeFileSync(join(a.dir, 'notes.txt'), 'v0')
    await pushTo(a, b)
    assert.equal(readFileSync(join(b.dir, 'notes.txt'), 'utf8'), 'v0')
    // A edits: B fast-forwards; B pushing its (older) tree back changes nothing on A
    writeFileSync(join(a.dir, 'notes.txt'), 'v1 from a')
    await pushTo(a, b)
    assert.equal(readFileSync(join(b.dir, 'notes.txt'), 'utf8'), 'v1 from a')
    const back = await pushTo(b, a)
    assert.deepEqual(back.written, [])
    assert.deepEqual(back.conflicts, [])
    // both edit while apart: both versions survive, the same names on both sides
    writeFileSync(join(a.dir, 'notes.txt'), 'v2 from a')
    writeFileSync(join(b.dir, 'notes.txt'), 'v2 from b, longer')
    const r1 = await pushTo(a, b)
    assert.equal(r1.conflicts.length, 1)
    // B's push then only brings the copy B made (A's own version already holds the name)
    const r2 = await pushTo(b, a)
    assert.deepEqual(r2.conflicts, [])
    assert.equal(r2.written.length, 1)
    assert.match(r2.written[0] as string, /^notes\.txt\.conflict-b\.test-/)
    assert.deepEqual(files(a), files(b))
    const names = Object.keys(files(a))
    assert.equal(names.length, 2)
    // a.test sorts first: its version keeps the name, b's is the copy named after b
    assert.equal(files(a)['notes.txt'], 'v2 from a')
    assert.match(names[1] as string, /^notes\.txt\.conflict-b\.test-\d{8}T\d{6}$/)
    assert.equal(files(a)[names[1] as string], 'v2 from b, longer')
    // and a further push either way is a no-op
    assert.deepEqual((await pushTo(a, b)).written, [])
  } finally {
    rmSync(a.dir, { recursive: true, force: true })
    rmSync(b.dir, { recursive: true, force: true })
  }
})

test('deletes: applied only to the version the sender deleted; an edit beats a delete', { skip }, async () => {
  const a = box('a')
  const b = box('b')
  try {
    writeFileSync(join(a.dir, 'gone.txt'), 'x')
    writeFileSync(join(a.dir, 'kept.txt'), 'y')
    await pushTo(a, b)
    rmSync(join(a.dir, 'gone.txt'))
    rmSync(join(a.dir, 'kept.txt'))
    writeFileSync(join(b.dir, 'kept.txt'), 'y edited on b')
    const r = await pushTo(a, b)
    assert.deepEqual(r.deleted, ['gone.txt'])
    assert.equal(existsSync(join(b.dir, 'gone.txt')), false)
    assert.equal(readFileSync(join(b.dir, 'kept.txt'), 'utf8'), 'y edited on b')
    // A has not seen B's edit: B's push brings the edited file back to A
    await pushTo(b, a)
    assert.equal(readFileSync(join(a.dir, 'kept.txt'), 'utf8'), 'y edited on b')
    // and the deleted file does not come back from B
    assert.equal(existsSync(join(a.dir, 'gone.txt')), false)
  } finally {
    rmSync(a.dir, { recursive: true, force: true })
    rmSync(b.dir, { recursive: true, force: true })
  }
})

test('a merge that would end over the quota changes nothing', { skip }, async () => {
  const a = box('a')
  const b = box('b')
  try {
    writeFileSync(join(a.dir, 'big.bin'), 'a'.repeat(3 * 1024 * 1024))
    writeFileSync(join(b.dir, 'local.bin'), 'b'.repeat(3 * 1024 * 1024))
    await assert.rejects(pushTo(a, b), { code: 'over-quota', message: /merged tree would be \d+ bytes, over the quota of 5242880 bytes; nothing applied/ })
    assert.deepEqual(Object.keys(files(b)), ['local.bin'])
  } finally {
    rmSync(a.dir, { recursive: true, force: true })
    rmSync(b.dir, { recursive: true, force: true })
  }
})

test('a file that changed after the sender\'s scan (a write under way) is not shown; the next push brings it', { skip }, async () => {
  const a = box('a')
  const b = box('b')
  try {
    writeFileSync(join(a.dir, 'notes.txt'), 'v0')
    await pushTo(a, b)
    writeFileSync(join(a.dir, 'notes.txt'), 'v1, the first half')
    const r = await pushTo(a, b, () => { writeFileSync(join(a.dir, 'notes.txt'), 'v1, the first half and the rest') })
    assert.deepEqual(r.written, [])
    assert.deepEqual(r.skipped.map((x) => x.path), ['notes.txt'])
    assert.equal(readFileSync(join(b.dir, 'notes.txt'), 'utf8'), 'v0', 'B still shows the whole old version')
    await pushTo(a, b)
    assert.equal(readFileSync(join(b.dir, 'notes.txt'), 'utf8'), 'v1, the first half and the rest')
  } finally {
    rmSync(a.dir, { recursive: true, force: true })
    rmSync(b.dir, { recursive: true, force: true })
  }
})
