import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CENTER_LAYOUT } from '../../src/cli/commands/setup.js'
import { createTestUser } from '../_util/peers.js'
import { ROOT, ctl } from './_run.js'

const asRoot = process.getuid?.() === 0 ? false : 'setup changes owners: run as root'

test('setup center lays out the tree with owners and modes, and a second run changes nothing', { skip: asRoot }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'center-tree-'))
  const root = join(dir, 'center')
  try {
    const first = await ctl(['--json', 'setup', 'center', '--root', root])
    assert.equal(first.code, 0, first.stderr)
    const center = Number(execFileSync('id', ['-u', 'center'], { encoding: 'utf8' }).trim())
    for (const d of CENTER_LAYOUT) {
      const st = statSync(join(root, d.path))
      assert.equal(st.mode & 0o7777, d.mode, `${d.path} mode`)
      assert.equal(st.uid, d.owner === 'center' ? center : 0, `${d.path} owner`)
    }
    assert.ok(existsSync(join(root, 'README.md')), 'README from the skeleton')
    assert.ok(!existsSync(join(root, 'users/.keep')), '.keep files are not copied')

    writeFileSync(join(root, 'README.md'), 'local notes\n')
    execFileSync('chmod', ['0700', join(root, 'shared')])
    const again = JSON.parse((await ctl(['--json', 'setup', 'center', '--root', root])).stdout) as { steps: Array<{ action: string, what: string }> }
    assert.deepEqual(again.steps.filter((s) => s.action !== 'unchanged').map((s) => s.what), [`${root}/shared (2775 root:center)`], 'only the damaged mode is repaired')
    assert.equal(readFileSync(join(root, 'README.md'), 'utf8'), 'local notes\n', 'a sysadmin\'s edit is kept')
    const third = JSON.parse((await ctl(['--json', 'setup', 'center', '--root', root])).stdout) as { steps: Array<{ action: string }> }
    assert.ok(third.steps.every((s) => s.action === 'unchanged'))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

const pgSkip = asRoot !== false ? asRoot
  : spawnSync('runuser', ['-u', 'postgres', '--', 'psql', '-XAtqc', 'select 1']).status !== 0 ? 'no local PostgreSQL cluster (apt-get install postgresql)' : false

test('setup postgres creates a role and database once, and the printed URL works with peer authentication', { skip: pgSkip }, async () => {
  const user = await createTestUser()
  const psql = (q: string): string => execFileSync('runuser', ['-u', 'postgres', '--', 'psql', '-XAtqc', q], { encoding: 'utf8' }).trim()
  try {
    const first = await ctl(['--json', 'setup', 'postgres', '--db', `${user.name}_db`, '--role', user.name])
    assert.equal(first.code, 0, first.stderr)
    const r = JSON.parse(first.stdout) as { url: string, steps: Array<{ action: string }> }
    assert.deepEqual(r.steps.map((s) => s.action), ['created', 'created'])
    assert.equal(r.url, `postgresql://${user.name}@localhost/${user.name}_db?host=/var/run/postgresql`)
    assert.equal(psql(`select pg_get_userbyid(datdba) from pg_database where datname = '${user.name}_db'`), user.name)
    const again = JSON.parse((await ctl(['--json', 'setup', 'postgres', '--db', `${user.name}_db`, '--role', user.name])).stdout) as { steps: Array<{ action: string }> }
    assert.deepEqual(again.steps.map((s) => s.action), ['unchanged', 'unchanged'])
    // the account of the same name gets in through the socket, as centerd (User=center) will;
    // psql (libpq reads the same URL) because that user may not be able to read this checkout
    const who = execFileSync('runuser', ['-u', user.name, '--', 'psql', '-XAtq', '-d', r.url, '-c', 'select current_user'], { encoding: 'utf8', cwd: '/' })
    assert.equal(who.trim(), user.name)
    const bad = await ctl(['setup', 'postgres', '--db', 'x; drop table y'])
    assert.notEqual(bad.code, 0)
    assert.match(bad.stderr, /lower-case letters/)
  } finally {
    spawnSync('runuser', ['-u', 'postgres', '--', 'psql', '-Xqc', `drop database if exists ${user.name}_db`, '-c', `drop role if exists ${user.name}`])
    await user.remove()
  }
})

test('setup units installs into a root, creates the account and directories, enables centerd, and is idempotent', { skip: asRoot }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'center-image-'))
  try {
    mkdirSync(join(root, 'etc'))
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n')
    writeFileSync(join(root, 'etc/group'), 'root:x:0:\n')
    const first = await ctl(['--json', 'setup', 'units', '--target-root', root])
    assert.equal(first.code, 0, first.stderr)
    const unit = readFileSync(join(root, 'etc/systemd/system/centerd.service'), 'utf8')
    assert.match(unit, new RegExp(`^ExecStart=${process.execPath} ${ROOT}/dist/src/bin/centerd.js --config /etc/center/center.toml$`, 'm'), 'ExecStart follows --prefix and this node')
    assert.match(readFileSync(join(root, 'etc/passwd'), 'utf8'), /^center:x:\d+:\d+:/m)
    assert.equal(statSync(join(root, 'var/lib/center')).mode & 0o7777, 0o700)
    assert.equal(statSync(join(root, 'center/shared')).mode & 0o7777, 0o2775)
    assert.equal(readlinkSync(join(root, 'etc/systemd/system/multi-user.target.wants/centerd.service')), '/etc/systemd/system/centerd.service')
    const again = JSON.parse((await ctl(['--json', 'setup', 'units', '--target-root', root])).stdout) as { steps: Array<{ action: string, what: string }> }
    assert.ok(again.steps.filter((s) => s.what.startsWith(root)).every((s) => s.action === 'unchanged'), JSON.stringify(again.steps))
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})
