import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawnSync } from 'node:child_process'
import { aptInstall } from '../_util/apt.js'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { btrfsQuota } from '../../src/quota/index.js'

const run = promisify(execFile)
const MiB = 1024 * 1024

const have = (bin: string): boolean => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0

function skipReason (): string | false {
  if (process.getuid?.() !== 0) return 'needs root (loop mount, btrfs quota)'
  // the harness installs what it needs when it can (a fresh CI machine lacks btrfs-progs)
  if (!have('mkfs.btrfs')) aptInstall(['btrfs-progs'])
  for (const bin of ['btrfs', 'mkfs.btrfs', 'setpriv']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return `${bin} not installed (apt-get install -y btrfs-progs util-linux)`
  }
  return false
}

test('btrfs backend: a subvolume per user with a 5 MiB qgroup the kernel enforces', { skip: skipReason(), timeout: 60_000 }, async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'center-btrfs-'))
  const img = join(base, 'img')
  const mnt = join(base, 'mnt')
  let mounted = false
  t.after(async () => {
    if (mounted) await run('umount', [mnt]).catch(async () => await run('umount', ['-l', mnt]))
    await rm(base, { recursive: true, force: true })
  })
  await chmod(base, 0o755) // the user must be able to reach the mount
  await mkdir(mnt)
  await run('truncate', ['-s', '256M', img])
  await run('mkfs.btrfs', ['-q', img])
  try {
    await run('mount', ['-o', 'loop', img, mnt])
  } catch (err) {
    t.skip(`cannot loop-mount btrfs here: ${(err as Error).message.split('\n')[0]}`)
    return
  }
  mounted = true
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
