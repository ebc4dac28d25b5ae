import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client, InvalidCredentialsError } from 'ldapts'
import { stopLdap } from '../../src/setup/ldap.js'
import { slapdAvailability } from '../_util/slapd.js'
import { freePort } from '../_util/wait.js'
import { ctl } from './_run.js'

// installs slapd + ldap-utils when root and missing (test/_util/apt.ts)
const avail = process.getuid?.() !== 0 ? { ok: false as const, reason: 'setup ldap hands files to openldap: run as root' } : slapdAvailability()
const skip = avail.ok ? false : avail.reason

interface Result { steps: Array<{ action: string, what: string }>, toml: string[], pid: number | null }

let dir = ''
let slapdDir = ''
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'cn8-ldap-'))
  chmodSync(dir, 0o755) // slapd runs as openldap and must reach its files
  slapdDir = join(dir, 'slapd')
})
after(async () => {
  if (slapdDir !== '') await stopLdap(slapdDir)
  rmSync(dir, { recursive: true, force: true })
})

test('setup ldap builds a TLS slapd with ppolicy lockout, and a re-run leaves it alone', { skip }, async () => {
  const port = await freePort()
  const pwFile = join(dir, 'ldap.password')
  const args = ['--json', 'setup', 'ldap', '--dir', slapdDir, '--port', String(port), '--password-file', pwFile, '--max-failures', '2', '--start']
  const first = await ctl(args)
  assert.equal(first.code, 0, first.stderr)
  const r = JSON.parse(first.stdout) as Result
  assert.ok(r.pid !== null)
  assert.deepEqual(r.toml, ['[ldap]', `url = "ldap://127.0.0.1:${port}"`, 'base_dn = "dc=center,dc=local"', 'bind_dn = "cn=admin,dc=center,dc=local"',
    `password_file = "${pwFile}"`, `ca_file = "${join(slapdDir, 'tls/ca.crt')}"`, 'starttls = true'])
  assert.equal(statSync(pwFile).mode & 0o777, 0o600)
  assert.equal(statSync(join(slapdDir, 'tls/ca.key')).mode & 0o777, 0o600)
  const password = readFileSync(pwFile, 'utf8')
  assert.match(password, /^[A-Za-z0-9_-]{32}$/)
  const ca = readFileSync(join(slapdDir, 'tls/ca.crt'), 'utf8')
  const url = `ldap://127.0.0.1:${port}`

  // StartTLS is verified against the CA made on the box, and only that one
  const untrusted = new Client({ url })
  await assert.rejects(untrusted.startTLS({}), /certificate/i)
  await untrusted.unbind().catch(() => {})

  const admin = new Client({ url })
  await admin.startTLS({ ca: [ca] })
  await admin.bind('cn=admin,dc=center,dc=local', password)
  const dn = 'uid=cn8t,ou=people,dc=center,dc=local'
  await admin.add(dn, {
    objectClass: ['inetOrgPerson', 'ldapPublicKey'], uid: 'cn8t', cn: 'cn8t', sn: 'test', userPassword: 'right-pw',
    sshPublicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDQqnl0ymz8n5i3YFQyHl1ydq1R7nkmrhSAtrAkz1Ufa cn8'
  })

  const bindAs = async (pw: string): Promise<void> => {
    const c = new Client({ url })
    try {
      await c.startTLS({ ca: [ca] })
      await c.bind(dn, pw)
    } finally {
      await c.unbind().catch(() => {})
    }
  }
  await bindAs('right-pw')
  for (let i = 0; i < 2; i++) await assert.rejects(bindAs('wrong'), InvalidCredentialsError)
  await assert.rejects(bindAs('right-pw'), InvalidCredentialsError, 'locked after --max-failures bad binds')
  const { searchEntries } = await admin.search(dn, { scope: 'base', attributes: ['pwdAccountLockedTime'] })
  assert.ok(searchEntries[0]?.pwdAccountLockedTime !== undefined, 'ppolicy marked the account locked')
  await admin.unbind()

  const again = await ctl(args)
  assert.equal(again.code, 0, again.stderr)
  const r2 = JSON.parse(again.stdout) as Result
  assert.deepEqual(r2.steps.map((s) => s.action), ['unchanged', 'unchanged'])
  assert.equal(r2.pid, r.pid, 'the running slapd is kept')
  assert.equal(readFileSync(pwFile, 'utf8'), password, 'the password is not replaced')
})

test('setup ldap refuses a suffix that is not dc= components, and a dir slapd could not reach', { skip }, async () => {
  const closed = join(dir, 'closed')
  mkdirSync(closed, { mode: 0o700 })
  const hidden = await ctl(['setup', 'ldap', '--dir', join(closed, 'slapd'), '--password-file', join(dir, 'hidden.pw')])
  assert.notEqual(hidden.code, 0)
  assert.match(hidden.stderr, /slapd runs as openldap and cannot pass through .*closed \(mode 700\): use a --dir outside it/)
  assert.ok(!existsSync(join(closed, 'slapd')), 'nothing built')
  const bad = await ctl(['setup', 'ldap', '--dir', join(dir, 'bad'), '--suffix', 'o=x', '--password-file', join(dir, 'bad.pw')])
  assert.notEqual(bad.code, 0)
  assert.match(bad.stderr, /--suffix "o=x": use dc=… components/)
})
