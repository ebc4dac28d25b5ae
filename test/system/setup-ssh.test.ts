import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { aptInstall } from '../_util/apt.js'
import { ROOT, ctl } from './_run.js'

function sshdAvailable (): string | false {
  if (process.getuid?.() !== 0) return 'setup ssh creates a system account: run as root'
  if (!existsSync('/usr/sbin/sshd')) aptInstall(['openssh-server'])
  return existsSync('/usr/sbin/sshd') ? false : 'openssh-server is not installed and apt-get could not install it'
}
const skip = sshdAvailable()

const user = `cn8s${randomBytes(3).toString('hex')}`
const dir = mkdtempSync(join(tmpdir(), 'cn8-ssh-'))
after(() => {
  spawnSync('userdel', [user], { stdio: 'ignore' })
  rmSync(dir, { recursive: true, force: true })
})

interface Result { steps: Array<{ action: string, what: string }> }

test('setup ssh creates the sync account and an sshd snippet sshd accepts, and a re-run changes nothing', { skip }, async () => {
  const sshdDir = join(dir, 'sshd_config.d')
  const args = ['--json', 'setup', 'ssh', '--user', user, '--root', join(dir, 'center'), '--sshd-dir', sshdDir]
  const first = await ctl(args)
  assert.equal(first.code, 0, first.stderr)
  const r = JSON.parse(first.stdout) as Result
  assert.deepEqual(r.steps.map((s) => s.action), ['created', 'created', 'ran'])

  const passwd = execFileSync('getent', ['passwd', user], { encoding: 'utf8' }).trim().split(':')
  assert.ok(Number(passwd[2]) < 1000, 'a system account')
  assert.equal(passwd[6], '/bin/sh', 'a shell, for the forced command')
  const shadow = execFileSync('getent', ['shadow', user], { encoding: 'utf8' }).split(':')
  assert.equal(shadow[1], '*', 'no password but not locked, or sshd refuses its keys')

  const snippet = join(sshdDir, 'center-sync.conf')
  const text = readFileSync(snippet, 'utf8')
  assert.match(text, new RegExp(`^Match User ${user}$`, 'm'))
  assert.match(text, new RegExp(`AuthorizedKeysFile ${join(dir, 'center/.sync/authorized_keys')}`))
  assert.match(text, /DisableForwarding yes/)
  assert.match(text, /PermitTTY no/)
  // sshd itself applies the Match block to this user
  const eff = execFileSync('/usr/sbin/sshd', ['-T', '-f', snippet, '-C', `user=${user},host=peer.example,addr=127.0.0.1`], { encoding: 'utf8' })
  assert.match(eff, new RegExp(`^authorizedkeysfile ${join(dir, 'center/.sync/authorized_keys')}$`, 'm'))
  assert.match(eff, /^permittty no$/m)

  // beside the accounts snippet (AuthorizedKeysCommand for users), as in /etc/ssh/sshd_config.d: both apply
  writeFileSync(join(sshdDir, 'center.conf'), readFileSync(join(ROOT, 'systemd/sshd_config.d/center.conf')))
  writeFileSync(join(dir, 'sshd_config'), `Include ${sshdDir}/*.conf\n`)
  const conf = ['-f', join(dir, 'sshd_config'), '-C']
  execFileSync('/usr/sbin/sshd', ['-t', '-f', join(dir, 'sshd_config')])
  const sync = execFileSync('/usr/sbin/sshd', ['-T', ...conf, `user=${user},host=peer.example,addr=127.0.0.1`], { encoding: 'utf8' })
  assert.match(sync, /^authorizedkeyscommand none$/m, 'peers\' keys come only from the file centerd writes')
  const other = execFileSync('/usr/sbin/sshd', ['-T', ...conf, 'user=alice,host=x.example,addr=127.0.0.1'], { encoding: 'utf8' })
  assert.match(other, /^authorizedkeyscommand \/usr\/bin\/center-authorized-keys %u$/m)
  assert.match(other, /^authorizedkeysfile \.ssh\/authorized_keys$/m)

  const again = await ctl(args)
  assert.equal(again.code, 0, again.stderr)
  assert.deepEqual((JSON.parse(again.stdout) as Result).steps.map((s) => s.action), ['unchanged', 'unchanged', 'ran'])
})

test('setup ssh refuses a bad account name and a root with spaces', { skip }, async () => {
  const bad = await ctl(['setup', 'ssh', '--user', 'Bad User', '--sshd-dir', join(dir, 'x')])
  assert.notEqual(bad.code, 0)
  assert.match(bad.stderr, /--user "Bad User": use lower-case letters, digits, _ and -/)
  const rel = await ctl(['setup', 'ssh', '--user', user, '--root', '/ce nter', '--sshd-dir', join(dir, 'x')])
  assert.notEqual(rel.code, 0)
  assert.match(rel.stderr, /--root "\/ce nter": an absolute path without spaces/)
  assert.ok(!existsSync(join(dir, 'x')), 'nothing written on a refusal')
})
