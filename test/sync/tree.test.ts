import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { applyTree, checkIncoming, conflictName, recordAgreed, scanTree, userTreeOf } from '../../src/sync/tree.js'

const isRoot = process.getuid?.() === 0
const UID = 20001

async function tmp (t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'center-tree-'))
  t.after(async () => { await rm(d, { recursive: true, force: true }) })
  return d
}

async function dirs (base: string): Promise<{ staging: string, target: string, state: string }> {
  const staging = join(base, 'staging')
  const target = join(base, 'users', 'alice')
  await mkdir(staging, { recursive: true })
  await mkdir(target, { recursive: true })
  return { staging, target, state: join(base, 'state', 'users-alice.json') }
}

test('userTreeOf only ever names <root>/users/<name>', () => {
  assert.equal(userTreeOf('/center', 'alice'), '/center/users/alice')
  for (const bad of ['..', '../bob', 'alice/..', 'a/b', '', '-x']) assert.throws(() => userTreeOf('/center', bad))
  assert.throws(() => userTreeOf('/center/../etc', 'alice'))
})

test('scanTree excludes escaping symlinks, FIFOs, sockets, set-uid/gid files and device nodes', async (t) => {
  const d = await tmp(t)
  await mkdir(join(d, 'sub'))
  await writeFile(join(d, 'ok.txt'), 'hello')
  await writeFile(join(d, 'sub', 'inner.txt'), 'x')
  await symlink('/etc/shadow', join(d, 'shadow'))
  await symlink('../bob/secret', join(d, 'bob-secret'))
  await symlink('../../x', join(d, 'sub', 'up2'))
  await symlink('../ok.txt', join(d, 'sub', 'fine'))
  await symlink('sub', join(d, 'subl'))
  await symlink('subl/../../etc/passwd', join(d, 'via-link'))
  spawnSync('mkfifo', [join(d, 'fifo')])
  await writeFile(join(d, 'suid'), '#!/bin/sh\n')
  await chmod(join(d, 'suid'), 0o4755)
  await writeFile(join(d, 'sgid'), 'x')
  await chmod(join(d, 'sgid'), 0o2755)
  const srv = createServer()
  await new Promise<void>((resolve) => srv.listen(join(d, 'sock'), resolve))
  t.after(() => { srv.close() })
  if (isRoot) spawnSync('mknod', [join(d, 'null'), 'c', '1', '3'])

  const s = await scanTree(d)
  assert.deepEqual(s.entries.map((e) => e.path).sort(), ['ok.txt', 'sub', 'sub/fine', 'sub/inner.txt', 'subl'])
  const reasons = Object.fromEntries(s.forbidden.map((f) => [f.path, f.reason]))
  assert.deepEqual(reasons, {
    shadow: 'symlink-absolute',
    'bob-secret': 'symlink-escape',
    'sub/up2': 'symlink-escape',
    'via-link': 'symlink-through-symlink',
    fifo: 'fifo',
    suid: 'setuid',
    sgid: 'setgid',
    sock: 'socket',
    ...(isRoot ? { null: 'device' } : {})
  })
  assert.equal(s.totalBytes, 6)
  assert.equal(s.entries.find((e) => e.path === 'ok.txt')?.hash, '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824')
})

test('checkIncoming refuses forbidden entries and trees over quota, naming the problem', async (t) => {
  const d = await tmp(t)
  await writeFile(join(d, 'a'), Buffer.alloc(3000))
  await assert.doesNotReject(checkIncoming(d, 3000))
  await writeFile(join(d, 'b'), Buffer.alloc(10))
  await assert.rejects(checkIncoming(d, 3000), { name: 'QuotaExceededError', code: 'over-quota', message: /3010 bytes is over the quota of 3000/ })
  await symlink('/etc/shadow', join(d, 'shadow'))
  await assert.rejects(checkIncoming(d, 1e6), { name: 'ForbiddenEntryError', message: /shadow \(symlink-absolute\)/ })
})

test('an over-quota staging tree is refused and the target is left exactly as it was', { skip: isRoot ? false : 'needs root (chown to the user)' }, async (t) => {
  const { staging, target, state } = await dirs(await tmp(t))
  await writeFile(join(target, 'keep.txt'), 'mine')
  await writeFile(join(staging, 'keep.txt'), 'theirs')
  await writeFile(join(staging, 'huge'), Buffer.alloc(6000))
  await assert.rejects(applyTree(staging, target, UID, UID, { stateFile: state, peer: 'b.example', limitBytes: 5000 }), { code: 'over-quota' })
  assert.deepEqual(await readdir(target), ['keep.txt'])
  assert.equal(await readFile(join(target, 'keep.txt'), 'utf8'), 'mine')
  await assert.rejects(stat(state))
})

test('applyTree writes owned files, safe symlinks and dirs; forbidden entries never arrive', { skip: isRoot ? false : 'needs root (chown, mknod)' }, async (t) => {
  const { staging, target, state } = await dirs(await tmp(t))
  await mkdir(join(staging, 'd'))
  await writeFile(join(staging, 'd', 'f.txt'), 'data')
  await chmod(join(staging, 'd', 'f.txt'), 0o640)
  await symlink('d/f.txt', join(staging, 'link'))
  const report = await applyTree(staging, target, UID, UID + 1, { stateFile: state, peer: 'b.example' })
  assert.deepEqual(report.written.sort(), ['d', 'd/f.txt', 'link'])
  const st = await stat(join(target, 'd', 'f.txt'))
  assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [UID, UID + 1, 0o640])
  assert.equal((await lstat(join(target, 'link'))).uid, UID)
  assert.equal(await readlink(join(target, 'link')), 'd/f.txt')
  assert.equal((await stat(state)).mode & 0o777, 0o600)

  spawnSync('mknod', [join(staging, 'null'), 'c', '1', '3'])
  await symlink('/etc/shadow', join(staging, 'shadow'))
  await assert.rejects(applyTree(staging, target, UID, UID, { stateFile: state, peer: 'b.example' }), { name: 'ForbiddenEntryError' })
  assert.deepEqual((await readdir(target)).sort(), ['d', 'link'])
})

test('applyTree never writes through a symlinked parent inside the target', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const base = await tmp(t)
  const { staging, target, state } = await dirs(base)
  const outside = join(base, 'outside')
  await mkdir(outside)
  await symlink(outside, join(target, 'd')) // the local user planted this
  await mkdir(join(staging, 'e'))
  await writeFile(join(staging, 'e', 'f'), 'x')
  // local `d` is a symlink (kind symlink), incoming `d` is a dir: skipped, never followed
  await mkdir(join(staging, 'd'))
  await writeFile(join(staging, 'd', 'evil'), 'x')
  const report = await applyTree(staging, target, UID, UID, { stateFile: state, peer: 'b.example' })
  assert.deepEqual(await readdir(outside), [])
  assert.ok(report.skipped.some((s) => s.path === 'd'))
  assert.equal(await readFile(join(target, 'e', 'f'), 'utf8'), 'x')
})

test('files are replaced by rename: a reader holding the old file never sees a mix', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const { staging, target, state } = await dirs(await tmp(t))
  const old = Buffer.alloc(256 * 1024, 'a')
  await writeFile(join(staging, 'f'), old)
  const s0 = await checkIncoming(staging, 1e7)
  await applyTree(staging, target, UID, UID, { stateFile: state, peer: 'b.example', scan: s0 })
  const before = await stat(join(target, 'f'))
  const { open } = await import('node:fs/promises')
  const reader = await open(join(target, 'f'))
  try {
    await writeFile(join(staging, 'f'), Buffer.alloc(256 * 1024, 'b'))
    await applyTree(staging, target, UID, UID, { stateFile: state, peer: 'b.example' })
    // the open handle still reads the complete old content: the inode was swapped, not rewritten
    const seen = (await reader.readFile())
    assert.ok(seen.equals(old))
  } finally { await reader.close() }
  const after = await stat(join(target, 'f'))
  assert.notEqual(after.ino, before.ino)
  assert.ok((await readFile(join(target, 'f'))).equals(Buffer.alloc(256 * 1024, 'b')))
  assert.deepEqual((await readdir(target)).filter((n) => n.startsWith('.center-tmp-')), [])
})

test('a staged file swapped after the check is refused', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const { staging, target, state } = await dirs(await tmp(t))
  await writeFile(join(staging, 'f'), 'checked')
  const scan = await checkIncoming(staging, 1e6)
  await writeFile(join(staging, 'f'), 'swapped')
  await assert.rejects(applyTree(staging, target, UID, UID, { stateFile: state, peer: 'b.example', scan }), { name: 'StagingChangedError' })
  assert.deepEqual(await readdir(target), [])
})

test('when both sides changed a file, both versions survive; one-sided changes and deletes merge', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const { staging, target, state } = await dirs(await tmp(t))
  const opts = { stateFile: state, peer: 'tilde.example', now: new Date('2025-03-04T05:06:07Z') }
  for (const [n, c] of [['notes.txt', 'v1'], ['theirs.txt', 't1'], ['mine.txt', 'm1'], ['gone.txt', 'g'], ['kept.txt', 'k1']]) {
    await writeFile(join(staging, n as string), c as string)
  }
  await applyTree(staging, target, UID, UID, opts)
  await recordAgreed(state, await scanTree(target))

  await writeFile(join(target, 'notes.txt'), 'local edit') // both change notes.txt
  await writeFile(join(staging, 'notes.txt'), 'remote edit')
  await writeFile(join(staging, 'theirs.txt'), 't2') // only remote
  await writeFile(join(target, 'mine.txt'), 'm2') // only local
  await rm(join(staging, 'gone.txt')) // remote delete, local unchanged
  await rm(join(staging, 'kept.txt')) // remote delete, local changed
  await writeFile(join(target, 'kept.txt'), 'k2')
  await writeFile(join(target, 'new-local.txt'), 'n') // never agreed

  const r = await applyTree(staging, target, UID, UID, opts)
  const copy = 'notes.txt.conflict-tilde.example-20250304T050607'
  assert.deepEqual(r.conflicts, [{ path: 'notes.txt', copy }])
  assert.equal(await readFile(join(target, 'notes.txt'), 'utf8'), 'local edit')
  assert.equal(await readFile(join(target, copy), 'utf8'), 'remote edit')
  assert.equal(await readFile(join(target, 'theirs.txt'), 'utf8'), 't2')
  assert.equal(await readFile(join(target, 'mine.txt'), 'utf8'), 'm2')
  assert.equal(await readFile(join(target, 'kept.txt'), 'utf8'), 'k2')
  assert.deepEqual(r.deleted, ['gone.txt'])
  assert.deepEqual((await readdir(target)).sort(), ['kept.txt', 'mine.txt', 'new-local.txt', 'notes.txt', copy, 'theirs.txt'].sort())

  // the same stale push again makes no second copy
  const again = await applyTree(staging, target, UID, UID, opts)
  assert.deepEqual(again.conflicts, [])
})

test('conflict names carry the peer and UTC time, stay unique, and refuse odd peer names', () => {
  const now = new Date('2025-12-31T23:59:58Z')
  assert.equal(conflictName('a/b.txt', 'peer.example', now, () => false), 'a/b.txt.conflict-peer.example-20251231T235958')
  const taken = new Set(['x.conflict-p-20251231T235958'])
  assert.equal(conflictName('x', 'p', now, (p) => taken.has(p)), 'x.conflict-p-20251231T235958-2')
  for (const bad of ['../x', 'a/b', '', '-p', 'a b']) assert.throws(() => conflictName('x', bad, now, () => false), { name: 'UnsafePathError' })
})
