import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { lstatSync, mkdirSync, readdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ensureHome, readAuthorizedKeys, rechownHome, removeHome } from '../../src/accounts/home.js'

// /center/users/NAME as root writes it, and as center-authorized-keys reads
// it: modes, owners, and no symlink ever followed.
const skip = process.getuid?.() !== 0 ? 'needs root (chown)' : false
const dir = mkdtempSync(join(tmpdir(), 'cn3-home-'))
const root = join(dir, 'center')
const UID = 1073741900
after(() => { rmSync(dir, { recursive: true, force: true }) })

test('a new home: 0755 dir, 0700 .ssh, 0600 authorized_keys, all owned by the user', { skip }, async () => {
  assert.equal(await ensureHome({ root }, 'amy', UID, ['ssh-ed25519 AAAA one']), true)
  const h = join(root, 'users', 'amy')
  assert.equal(lstatSync(h).mode & 0o777, 0o755)
  assert.equal(lstatSync(join(h, '.ssh')).mode & 0o777, 0o700)
  const f = lstatSync(join(h, '.ssh', 'authorized_keys'))
  assert.equal(f.mode & 0o777, 0o600)
  for (const p of [h, join(h, '.ssh'), join(h, '.ssh', 'authorized_keys')]) assert.deepEqual([lstatSync(p).uid, lstatSync(p).gid], [UID, UID], p)
  // an existing file is left alone unless asked; rewritten when asked
  assert.equal(await ensureHome({ root }, 'amy', UID, ['ssh-ed25519 AAAA two']), false)
  assert.equal(await ensureHome({ root }, 'amy', UID, ['ssh-ed25519 AAAA two'], { rewriteKeys: true }), true)
  assert.equal(await readAuthorizedKeys({ root }, 'amy', UID), 'ssh-ed25519 AAAA two\n')
})

test('symlinks planted by the user are never followed, when writing or reading', { skip }, async () => {
  await ensureHome({ root }, 'bea', UID, ['k'])
  const ssh = join(root, 'users', 'bea', '.ssh')
  const victim = join(dir, 'victim')
  writeFileSync(victim, 'precious\n')
  rmSync(join(ssh, 'authorized_keys'))
  symlinkSync(victim, join(ssh, 'authorized_keys'))
  await assert.rejects(readAuthorizedKeys({ root }, 'bea', UID), { name: 'UnsafeHomeError' })
  await ensureHome({ root }, 'bea', UID, ['new'], { rewriteKeys: true })
  assert.equal(readFileSync(victim, 'utf8'), 'precious\n', 'the target was not written')
  assert.ok(!lstatSync(join(ssh, 'authorized_keys')).isSymbolicLink(), 'the link itself was replaced')
  // .ssh as a symlink to a directory outside
  rmSync(ssh, { recursive: true })
  mkdirSync(join(dir, 'outside'))
  symlinkSync(join(dir, 'outside'), ssh)
  await assert.rejects(ensureHome({ root }, 'bea', UID, ['x'], { rewriteKeys: true }), { name: 'UnsafeHomeError' })
  await assert.rejects(readAuthorizedKeys({ root }, 'bea', UID), { name: 'UnsafeHomeError' })
  assert.deepEqual(readdirSync(join(dir, 'outside')), [], 'nothing written outside')
})

test('reading refuses a file of another owner, or writable by others', { skip }, async () => {
  await ensureHome({ root }, 'cid', UID, ['k'])
  const f = join(root, 'users', 'cid', '.ssh', 'authorized_keys')
  chmodSync(f, 0o666)
  await assert.rejects(readAuthorizedKeys({ root }, 'cid', UID), /writable/)
  chmodSync(f, 0o600)
  await assert.rejects(readAuthorizedKeys({ root }, 'cid', UID + 1), /belongs to uid/)
})

test('renumbering re-owns the files; removal takes the whole directory', { skip }, async () => {
  await ensureHome({ root }, 'dan', UID, ['k'])
  writeFileSync(join(root, 'users', 'dan', 'notes'), 'x')
  const { chownSync } = await import('node:fs')
  chownSync(join(root, 'users', 'dan', 'notes'), UID, UID)
  assert.equal(await rechownHome({ root }, 'dan', UID, UID + 7), 4)
  assert.equal(lstatSync(join(root, 'users', 'dan', 'notes')).uid, UID + 7)
  assert.equal(await removeHome({ root }, 'dan'), true)
  assert.equal(await removeHome({ root }, 'dan'), false)
  await assert.rejects(ensureHome({ root }, '../etc', UID, []), { name: 'InvalidUsernameError' })
})
