import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawnSync } from 'node:child_process'
import { btrfsUnsupported, mountBtrfs } from '../_util/btrfs.js'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { btrfsQuota } from '../../src/quota/index.js'

const run = promisify(execFile)
const MiB = 1024 * 1024

test('btrfs backend: a subvolume per user with a 5 MiB qgroup the kernel enforces', { skip: btrfsUnsupported(), timeout: 60_000 }, async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'center-btrfs-'))
  const img = join(base, 'img')
  const mnt = join(base, 'mnt')
  let fs: Awaited<ReturnType<typeof mountBtrfs>> | null = null
  t.after(async () => {
    await fs?.unmount()
    await rm(base, { recursive: true, force: true })
  })
  await chmod(base, 0o755) // the user must be able to reach the mount
  try {
    fs = await mountBtrfs(img, mnt)
  } catch (err) {
    t.skip(`cannot loop-mount btrfs here: ${(err as Error).message.split('\n')[0]}`)
    return
  }
  const q = btrfsQuota({ root: mnt })
  await q.init()
  assert.deepEqual((await q.check()).problems, [])
  const dir = await q.ensureUserTree('alice', 20001, 20001, 5 * MiB)
  assert.equal(dir, join(mnt, 'users', 'alice'))
  await q.ensureUserTree('alice', 20001, 20001, 5 * MiB) // idempotent

  await writeFile(join(dir, 'one'), Buffer.alloc(MiB, 1))
  await run('chown', ['20001:20001', join(dir, 'one')])
  const u = await q.usage('alice')
  assert.equal(u.limit, 5 * MiB)
  assert.ok(u.bytes >= MiB && u.bytes < 2 * MiB, `usage ${u.bytes}`)

  // as the user: writing 10 MB stops with EDQUOT
  const w = spawnSync('setpriv', ['--reuid=20001', '--regid=20001', '--clear-groups', 'sh', '-c', `head -c 10000000 /dev/zero > ${dir}/big`], { encoding: 'utf8' })
  assert.notEqual(w.status, 0)
  assert.match(w.stderr, /Disk quota exceeded/)

  await q.setLimit('alice', 20 * MiB)
  assert.equal((await q.usage('alice')).limit, 20 * MiB)

  await q.removeUserTree('alice')
  await assert.rejects(run('btrfs', ['subvolume', 'show', dir]))
  await q.removeUserTree('alice') // already gone: no error

  await mkdir(join(mnt, 'users', 'plain'))
  await assert.rejects(q.ensureUserTree('plain', 20002, 20002, MiB), /not a btrfs subvolume/)
})
