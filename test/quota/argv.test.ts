import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createQuotaBackend, parseQgroupShow, parseQuotaOutput, parseXfsQuota, setquotaArgv, setquotaQuota, xfsArgv, xfsQuota, type Runner } from '../../src/quota/index.js'

// ext4/xfs quotas cannot run on this kernel (no QFMT_V2, no XFS_QUOTA): these
// tests pin the exact argv the backends would execute, through a recording runner.
function recorder (stdout = ''): { run: Runner, calls: Array<[string, readonly string[]]> } {
  const calls: Array<[string, readonly string[]]> = []
  return { calls, run: async (cmd, args) => { calls.push([cmd, args]); return { stdout, stderr: '' } } }
}

test('setquota argv: 1 KiB blocks rounded up, hard limit only, numeric uid, mount last', () => {
  assert.deepEqual(setquotaArgv.limit(20001, 5 * 1024 * 1024, '/center'), ['setquota', ['-u', '20001', '0', '5120', '0', '0', '/center']])
  assert.deepEqual(setquotaArgv.limit(20001, 1025, '/srv/c'), ['setquota', ['-u', '20001', '0', '2', '0', '0', '/srv/c']])
  assert.deepEqual(setquotaArgv.usage(20001, '/center'), ['quota', ['-u', '-w', '-p', '-l', '-f', '/center', '20001']])
})

test('xfs argv: project = uidNumber, -c strings hold only validated pieces', () => {
  assert.deepEqual(xfsArgv.project('/center/users/alice', 20001, '/center'), ['xfs_quota', ['-x', '-c', 'project -s -p /center/users/alice 20001', '/center']])
  assert.deepEqual(xfsArgv.limit(20001, 5 * 1024 * 1024, '/center'), ['xfs_quota', ['-x', '-c', 'limit -p bsoft=0 bhard=5120k 20001', '/center']])
  assert.deepEqual(xfsArgv.usage(20001, '/center'), ['xfs_quota', ['-x', '-c', 'quota -p -N -n -b 20001', '/center']])
})

test('setquota and xfs backends run exactly those commands for a user tree', async () => {
  const root = await mkdtemp(join(tmpdir(), 'center-quota-argv-'))
  try {
    const a = recorder()
    const sq = setquotaQuota({ root, mount: root, run: a.run })
    const dir = await sq.ensureUserTree('alice', 20001, 20001, 5 * 1024 * 1024)
    assert.equal(dir, join(root, 'users', 'alice'))
    assert.equal((await stat(dir)).uid, 20001)
    await sq.setLimit('alice', 10 * 1024 * 1024)
    assert.deepEqual(a.calls, [['setquota', ['-u', '20001', '0', '5120', '0', '0', root]], ['setquota', ['-u', '20001', '0', '10240', '0', '0', root]]])

    const b = recorder()
    const xq = xfsQuota({ root, mount: root, run: b.run })
    await xq.ensureUserTree('bob', 20002, 20002, 5 * 1024 * 1024)
    await xq.removeUserTree('bob')
    assert.deepEqual(b.calls.map((c) => c[1][2]), [
      `project -s -p ${root}/users/bob 20002`, 'limit -p bsoft=0 bhard=5120k 20002',
      'limit -p bsoft=0 bhard=0k 20002', `project -C -p ${root}/users/bob 20002`
    ])
  } finally {
    await rm(root, { recursive: true, force: true })
  }
})

test('hostile names, paths and ids are refused before any command runs', async () => {
  const a = recorder()
  const sq = setquotaQuota({ root: '/tmp/nowhere', mount: '/tmp', run: a.run })
  for (const name of ['../bob', 'a/b', '-rf', '', 'Alice', 'a b', 'x'.repeat(40)]) {
    await assert.rejects(sq.ensureUserTree(name, 20001, 20001, 1), { name: 'BadQuotaArgumentError' })
  }
  await assert.rejects(sq.ensureUserTree('alice', 0, 0, 1), { name: 'BadQuotaArgumentError' })
  await assert.rejects(sq.ensureUserTree('alice', 20001, 20001, -1), { name: 'BadQuotaArgumentError' })
  for (const root of ['relative', '/a/../b', '/a b', "/a'b", '/a/']) {
    assert.throws(() => xfsQuota({ root, mount: '/', run: a.run }), { name: 'BadQuotaArgumentError' })
  }
  assert.throws(() => createQuotaBackend('xfs', { root: '/center' }), /needs the mount point/)
  assert.deepEqual(a.calls, [])
})

test('usage parsers read btrfs, quota and xfs_quota output', () => {
  const btrfs = 'qgroupid         rfer         excl     max_rfer     max_excl \n--------         ----         ----     --------     -------- \n0/5             16384        16384         none         none \n0/256         5210112      5210112      5242880         none \n'
  assert.deepEqual(parseQgroupShow(btrfs, '0/256'), { bytes: 5210112, limit: 5242880 })
  assert.deepEqual(parseQgroupShow(btrfs, '0/5'), { bytes: 16384, limit: null })
  assert.throws(() => parseQgroupShow(btrfs, '0/257'), { name: 'QuotaBackendError' })
  const quota = 'Disk quotas for user #20001 (uid 20001): \n     Filesystem  blocks   quota   limit   grace   files   quota   limit   grace\n      /dev/loop0    5121*      0    5120       0       3       0       0       0\n'
  assert.deepEqual(parseQuotaOutput(quota), { bytes: 5121 * 1024, limit: 5120 * 1024 })
  assert.deepEqual(parseXfsQuota('/dev/sdb1 12 0 5120 00 [--------] /center\n'), { bytes: 12 * 1024, limit: 5120 * 1024 })
})
