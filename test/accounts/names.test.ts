import { test } from 'node:test'
import assert from 'node:assert/strict'
import { checkGecos, checkShell, checkUsername, checkUsernameSyntax, parseIdFile, readLocalAccounts, type LocalAccountsReader } from '../../src/accounts/names.js'
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { escapeDnValue, escapeFilterValue } from '../../src/accounts/ldap-escape.js'

type Accounts = ReturnType<LocalAccountsReader>
const noLocal = (): Accounts => ({ users: [], groups: [] })
const box = (): Accounts =>
  ({ users: [{ name: 'alice2', id: 1000 }, { name: 'openldap', id: 101 }], groups: [{ name: 'wheelers', id: 1001 }] })

test('valid usernames pass', () => {
  for (const n of ['a', 'alice', 'bob_2', 'x-y', 'a'.repeat(32), 'tilde-user_9']) checkUsername(n, noLocal)
})

test('malformed usernames are refused with InvalidUsernameError', () => {
  const bad = ['', 'A', 'Alice', '1abc', '-abc', '_abc', 'abc-', 'a'.repeat(33), 'a b', 'a.b', 'é', 'a/b', 'a\0b', 'a\nb',
    '*', 'a*', 'a(b', 'a)b', 'a\\b', 'a,b', 'a=b', 'uid=x,ou=people', '*)(uid=*', 'a;b', 'a+b']
  for (const n of bad) assert.throws(() => checkUsernameSyntax(n), { name: 'InvalidUsernameError', code: 'bad-request' }, JSON.stringify(n))
  assert.throws(() => checkUsernameSyntax(42), { name: 'InvalidUsernameError' })
  assert.throws(() => checkUsernameSyntax('a'.repeat(1000)), /longer than 32/)
})

test('reserved, RFC 2142 and system names are refused with ReservedUsernameError', () => {
  for (const n of ['root', 'postmaster', 'abuse', 'hostmaster', 'webmaster', 'noc', 'security', 'www', 'daemon', 'nobody',
    'sshd', 'postgres', 'openldap', 'center', 'systemd-network', 'systemd-anything', 'debian-tor']) {
    assert.throws(() => checkUsername(n, noLocal), { name: 'ReservedUsernameError' }, n)
  }
})

test('users and groups present on this box are refused', () => {
  assert.throws(() => checkUsername('alice2', box), /system user on this box/)
  assert.throws(() => checkUsername('wheelers', box), /system group on this box/)
  checkUsername('carol', box)
})

test('the real /etc/passwd is read by default (root is always there)', () => {
  assert.throws(() => checkUsername('root'), { name: 'ReservedUsernameError' })
  const parsed = parseIdFile('root:x:0:0:root:/root:/bin/bash\n# c\n\nbad line\nx:x:12:12::/:/bin/sh\n')
  assert.deepEqual(parsed, [{ name: 'root', id: 0 }, { name: 'x', id: 12 }])
})

test('gecos: printable UTF-8 up to 128 characters, no metacharacters or controls', () => {
  for (const g of ['', 'Alice Example', 'Zoë Ñandú', '山田 太郎', "O'Brien", 'a'.repeat(128)]) checkGecos(g)
  const bad = ['a'.repeat(129), 'x\0y', 'x\ny', 'x\ty', 'a:b', 'a,b', 'a=b', 'a*b', 'a(b', 'a)b', 'a\\b', 'rtl\u202eevil', 'zw\u200bsp', ' lead', 'trail ', '\ud800']
  for (const g of bad) assert.throws(() => checkGecos(g), { name: 'InvalidGecosError' }, JSON.stringify(g))
})

test('shell must be a plain absolute path', () => {
  checkShell('/bin/bash')
  checkShell('/usr/local/bin/fish')
  for (const s of ['bash', '/bin/../etc/passwd', '/bin/ba sh', '/bin/bash\n', '', '/x;rm']) assert.throws(() => checkShell(s), { name: 'InvalidShellError' })
})

test('DN values are escaped per RFC 4514', () => {
  assert.equal(escapeDnValue('alice'), 'alice')
  assert.equal(escapeDnValue('a,b=c+d'), 'a\\,b\\=c\\+d')
  assert.equal(escapeDnValue('x"<>;\\'), 'x\\"\\<\\>\\;\\\\')
  assert.equal(escapeDnValue(' #lead'), '\\ #lead')
  assert.equal(escapeDnValue('#x'), '\\#x')
  assert.equal(escapeDnValue('trail '), 'trail\\ ')
  assert.equal(escapeDnValue('a\0b'), 'a\\00b')
})

test('filter values are escaped per RFC 4515', () => {
  assert.equal(escapeFilterValue('alice'), 'alice')
  assert.equal(escapeFilterValue('*)(uid=*'), '\\2a\\29\\28uid=\\2a')
  assert.equal(escapeFilterValue('a\\b\0'), 'a\\5cb\\00')
  assert.equal(escapeFilterValue('é'), '\\c3\\a9')
})

test('local accounts are read again as soon as /etc/passwd or /etc/group changes (they are cached between changes)', () => {
  const d = mkdtempSync(join(tmpdir(), 'cn3-names-'))
  try {
    const passwd = join(d, 'passwd')
    const group = join(d, 'group')
    writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/bash\n')
    const first = readLocalAccounts(passwd, group)
    assert.deepEqual(first, { users: [{ name: 'root', id: 0 }], groups: [] })
    assert.equal(readLocalAccounts(passwd, group).users, first.users, 'unchanged file: the parsed list is reused')
    appendFileSync(passwd, 'newlocal:x:1001:1001::/home/newlocal:/bin/sh\n')
    writeFileSync(group, 'newlocal:x:1001:\n')
    assert.deepEqual(readLocalAccounts(passwd, group), { users: [{ name: 'root', id: 0 }, { name: 'newlocal', id: 1001 }], groups: [{ name: 'newlocal', id: 1001 }] })
    assert.throws(() => { checkUsername('newlocal', () => readLocalAccounts(passwd, group)) }, { name: 'ReservedUsernameError' })
    rmSync(passwd)
    assert.deepEqual(readLocalAccounts(passwd, group).users, [])
  } finally { rmSync(d, { recursive: true, force: true }) }
})
