import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawnSync } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { rsyncPushArgv, sendOnlyRules, validateForcedCommand } from '../../src/sync/rsync.js'
import { applyTree, checkIncoming } from '../../src/sync/tree.js'

const run = promisify(execFile)
const stagingFor = (tree: string): string => `/var/lib/center/staging/${tree.replace('/', '-')}`
// what rsync 3.5 sends for rsyncPushArgv (captured with a fake -e command)
const GOOD = 'rsync --server -ltpre.iLsfxCIvu --timeout=30 --max-size=5242880 --delete -@-1 --partial-dir .center-partial --delay-updates --safe-links --numeric-ids . /center/users/alice/'

test('push argv over ssh: safe options, mtime to the nanosecond, multiplexed ssh', () => {
  const argv = rsyncPushArgv({ source: '/center/users/alice', dest: '/center/users/alice', maxFileBytes: 5242880, remote: { host: 'b.example', user: 'center', port: 2222, controlPath: '/run/center/ssh/%C' } })
  assert.deepEqual(argv, [
    '-a', '--no-owner', '--no-group', '--no-devices', '--no-specials', '--safe-links', '--chmod=u-s,g-s', '--delete',
    '--modify-window=-1', '--max-size=5242880', '--partial-dir=.center-partial', '--delay-updates', '--numeric-ids', '--timeout=30',
    '-e', 'ssh -F /dev/null -o BatchMode=yes -o ControlMaster=no -o ControlPath=/run/center/ssh/%C -o ControlPersist=60 -o KexAlgorithms=curve25519-sha256 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o ConnectTimeout=10 -p 2222',
    '/center/users/alice/', 'center@b.example:/center/users/alice/'
  ])
  assert.ok(rsyncPushArgv({ source: '/a', dest: '/b', maxFileBytes: 1, compare: 'checksum' }).includes('--checksum'))
  assert.throws(() => rsyncPushArgv({ source: '/a b', dest: '/b', maxFileBytes: 1 }))
  assert.throws(() => rsyncPushArgv({ source: '/a', dest: '/b', maxFileBytes: 1, remote: { host: '-oProxyCommand=x', user: 'center', controlPath: '/c' } }))
  assert.throws(() => rsyncPushArgv({ source: '/a', dest: '/b', maxFileBytes: 1, remote: { host: 'h', user: 'center', controlPath: '/c d' } }))
})

test('forced command: our own push is allowed and redirected to the staging dir', () => {
  const ok = validateForcedCommand(GOOD, { stagingFor })
  assert.equal(ok.tree, 'users/alice')
  assert.deepEqual(ok.argv, ['rsync', '--server', '-ltpre.iLsfxCIvu', '--timeout=30', '--max-size=5242880', '--delete', '-@-1',
    '--partial-dir', '.center-partial', '--delay-updates', '--safe-links', '--numeric-ids', '.', '/var/lib/center/staging/users-alice/'])
  assert.equal(validateForcedCommand(GOOD.replace('users/alice/', 'shared'), { stagingFor }).tree, 'shared')
})

test('forced command: hostile variants are all refused', () => {
  const hostile = [
    undefined, '', 'sh', 'bash -c id', 'rsync --daemon', 'scp -t /center/users/alice',
    GOOD.replace('--server', '--server --sender'),
    GOOD.replace('/center/users/alice/', '/etc/'),
    GOOD.replace('/center/users/alice/', '/center/users/alice/../bob/'),
    GOOD.replace('/center/users/alice/', '/center/users/../../etc/'),
    GOOD.replace('/center/users/alice/', '/center/home/alice/'),
    GOOD.replace('/center/users/alice/', '/center/users/alice/.ssh/'),
    GOOD.replace('/center/users/alice/', '/center/users/alice\\ x/'),
    GOOD.replace('/center/users/alice/', '/centerx/users/alice/'),
    `${GOOD}; rm -rf /`, `${GOOD} && id`, `${GOOD}\nid`, `$(id) ${GOOD}`, `${GOOD} \`id\``,
    GOOD.replace('-ltpre', '-ltpDre'), GOOD.replace('-ltpre', '-LHre'),
    GOOD.replace('--delete', '--remove-source-files'), GOOD.replace('--delete', '--rsync-path=/bin/sh'),
    GOOD.replace('--delete', '--link-dest=/etc'), GOOD.replace('--delete', '--log-file=/etc/x'),
    GOOD.replace('--partial-dir .center-partial', '--partial-dir /tmp'), GOOD.replace('--partial-dir .center-partial', '--temp-dir=/etc'),
    GOOD.replace('--delete', '--write-devices'), GOOD.replace('--delete', '--files-from=/etc/shadow'),
    GOOD.replace(' . ', ' /etc '), GOOD.replace('rsync --server', 'rsync  --server'), GOOD.replace('rsync', '/tmp/rsync'),
    'x'.repeat(2000)
  ]
  for (const cmd of hostile) {
    assert.throws(() => validateForcedCommand(cmd, { stagingFor }), { name: 'ForcedCommandError' }, `not refused: ${String(cmd).slice(0, 120)}`)
  }
})

const skip = process.getuid?.() !== 0 ? 'needs root (chown to the user)' : spawnSync('rsync', ['--version']).status !== 0 ? 'rsync not installed' : false

test('local rsync with the push argv into staging, then checkIncoming + applyTree, end to end', { skip, timeout: 20_000 }, async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'center-rsync-'))
  t.after(async () => { await rm(base, { recursive: true, force: true }) })
  const src = join(base, 'src')
  const staging = join(base, 'staging')
  const target = join(base, 'users', 'alice')
  for (const d of [join(src, 'sub'), staging, target]) await mkdir(d, { recursive: true })
  await writeFile(join(src, 'notes.txt'), 'hello')
  await writeFile(join(src, 'sub', 'data.bin'), Buffer.alloc(4096, 7))
  await symlink('../notes.txt', join(src, 'sub', 'notes'))
  await symlink('/etc/shadow', join(src, 'shadow'))
  await writeFile(join(src, 'suid'), 'x')
  await chmod(join(src, 'suid'), 0o4755)
  spawnSync('mkfifo', [join(src, 'fifo')])
  const sync = async (): Promise<void> => { await run('rsync', rsyncPushArgv({ source: src, dest: staging, maxFileBytes: 5242880 })) }
  const apply = async (): Promise<void> => {
    const scan = await checkIncoming(staging, 5242880)
    await applyTree(staging, target, 20001, 20001, { stateFile: join(base, 'state.json'), peer: 'a.example', scan, limitBytes: 5242880 })
  }
  await sync()
  await apply()
  assert.deepEqual((await readdir(target)).sort(), ['notes.txt', 'sub', 'suid'])
  assert.equal((await stat(join(target, 'suid'))).mode & 0o7777, 0o755)
  assert.equal((await stat(join(target, 'sub', 'data.bin'))).uid, 20001)

  // same size, same second: must still propagate (--modify-window=-1)
  await writeFile(join(src, 'notes.txt'), 'HELLO')
  await sync()
  await apply()
  assert.equal(await readFile(join(target, 'notes.txt'), 'utf8'), 'HELLO')

  // a deletion at the source is a deletion at the target
  await rm(join(src, 'suid'))
  await sync()
  await apply()
  assert.deepEqual((await readdir(target)).sort(), ['notes.txt', 'sub'])
})

test('only what the sender\'s scan approved is sent: an entry that appeared after the scan waits, a dropped one is deleted', { skip, timeout: 20_000 }, async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'center-rsync-'))
  t.after(async () => { await rm(base, { recursive: true, force: true }) })
  const src = join(base, 'src')
  const staging = join(base, 'staging')
  for (const d of [join(src, 'sub'), staging]) await mkdir(d, { recursive: true })
  await writeFile(join(src, 'notes.txt'), 'hello')
  await writeFile(join(src, 'sub', 'a*b?[c]'), 'wildcards in a name')
  await writeFile(join(staging, 'old.txt'), 'the sender no longer has this')
  // moved in after the scan: set-uid, so the next scan would forbid it
  await writeFile(join(src, 'late-suid'), 'x')
  await chmod(join(src, 'late-suid'), 0o4755)
  const rules = join(base, 'send.rules')
  await writeFile(rules, sendOnlyRules(['notes.txt', 'sub', 'sub/a*b?[c]']))
  const argv = rsyncPushArgv({ source: src, dest: staging, maxFileBytes: 5242880, sendOnlyFile: rules })
  assert.ok(argv.includes(`--filter=merge ${rules}`))
  await run('rsync', argv)
  assert.deepEqual((await readdir(staging)).sort(), ['notes.txt', 'sub'])
  assert.deepEqual(await readdir(join(staging, 'sub')), ['a*b?[c]'])
  assert.throws(() => rsyncPushArgv({ source: src, dest: staging, maxFileBytes: 1, sendOnlyFile: '/tmp/a b' }))
})
