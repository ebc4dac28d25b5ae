import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Attribute, Change, Client, InvalidCredentialsError } from 'ldapts'
import { pino } from 'pino'
import { LdapDirectory, type NewUser } from '../../src/accounts/directory.js'
import { allocateUid, candidateUid } from '../../src/accounts/uid.js'
import { slapdAvailability, startSlapd, type Slapd } from '../_util/slapd.js'
import { ed25519Line, ed25519PrivatePem } from './_keys.js'

const avail = slapdAvailability()
const skip = avail.ok ? false : `slapd unavailable: ${avail.reason}`
const logger = pino({ level: 'silent' })
const local = (): { users: Array<{ name: string, id: number }>, groups: Array<{ name: string, id: number }> } =>
  ({ users: [{ name: 'root', id: 0 }, { name: 'localguy', id: candidateUid('taken', 0) }], groups: [] })

describe('LdapDirectory against a real slapd over ldaps', { skip }, () => {
  let s: Slapd
  let dir: LdapDirectory
  const user = (name: string, over: Partial<NewUser> = {}): NewUser =>
    ({ name, uidNumber: candidateUid(name, 0), gecos: 'Test User', shell: '/bin/bash', keys: [], ...over })

  async function admin<T> (fn: (c: Client) => Promise<T>): Promise<T> {
    const c = new Client({ url: s.url, tlsOptions: { ca: [s.ca] } })
    try {
      await c.bind(s.bindDn, s.bindPassword)
      return await fn(c)
    } finally { await c.unbind().catch(() => {}) }
  }
  const allDns = async (): Promise<string[]> => await admin(async (c) =>
    (await c.search(s.baseDn, { filter: '(objectClass=*)', attributes: ['dn'] })).searchEntries.map((e) => e.dn).sort())

  before(async () => {
    s = await startSlapd({ maxFailures: 3 })
    dir = new LdapDirectory({ url: s.url, baseDn: s.baseDn, bindDn: s.bindDn, bindPassword: s.bindPassword, ca: s.ca }, { logger, localAccounts: local })
  })
  after(async () => { await s?.stop() })

  test('add, get, list and delete a user with keys; re-adding the same user is a no-op', async () => {
    const key = ed25519Line('alice@laptop')
    const alice = user('alice', { gecos: 'Zoë Example', keys: [key] })
    assert.equal(await dir.addUser(alice), true)
    assert.equal(await dir.addUser(alice), false)
    const got = await dir.getUser('alice')
    assert.deepEqual(got, { ...alice, homeDirectory: '/home/alice', locked: false })
    const group = await admin(async (c) => (await c.search(`ou=groups,${s.baseDn}`, { filter: '(cn=alice)' })).searchEntries[0])
    assert.equal(group?.gidNumber, String(alice.uidNumber))
    assert.equal(group?.memberUid, 'alice')
    await dir.addUser(user('bob', { gecos: '' }))
    assert.deepEqual((await dir.listUsers()).map((u) => u.name), ['alice', 'bob'])
    assert.equal((await dir.getUser('bob'))?.gecos, '')
    await assert.rejects(dir.addUser({ ...alice, shell: '/bin/sh' }), { name: 'ConflictError' })
    await assert.rejects(dir.addUser(user('carol', { uidNumber: alice.uidNumber })), { name: 'UidCollisionError' })
    assert.equal(await dir.ownerOf(alice.uidNumber), 'alice')
    assert.equal(await allocateUid('alice', { ownerOf: async (u) => await dir.ownerOf(u), localIds: new Set() }), alice.uidNumber)
    assert.equal(await dir.deleteUser('bob'), true)
    assert.equal(await dir.deleteUser('bob'), false)
    assert.equal(await dir.getUser('bob'), null)
  })

  test('users added in one LDAP transaction (RFC 5805): all of them; one already there and nothing is written', async () => {
    const batch = ['tx1', 'tx2', 'tx3'].map((n) => user(n, { keys: [ed25519Line(n)] }))
    const before = await allDns()
    assert.deepEqual([...await dir.withClient(async (c) => await dir.absentWith(c, ['tx1', 'tx2', 'tx3', 'alice']))].sort(), ['tx1', 'tx2', 'tx3'])
    await dir.addUsersInTransaction(batch)
    for (const u of batch) assert.deepEqual(await dir.getUser(u.name), { ...u, homeDirectory: `/home/${u.name}`, locked: false })
    const groups = await admin(async (c) => (await c.search(`ou=groups,${s.baseDn}`, { filter: '(|(cn=tx1)(cn=tx2)(cn=tx3))', attributes: ['cn', 'gidNumber'] })).searchEntries)
    assert.deepEqual(groups.map((g) => [g.cn, g.gidNumber]).sort(), batch.map((u) => [u.name, String(u.uidNumber)]).sort())
    // a stray group named like one of the next batch: the whole transaction fails and adds nobody
    await admin(async (c) => { await c.add(`cn=tx5,ou=groups,${s.baseDn}`, { objectClass: ['top', 'posixGroup'], cn: 'tx5', gidNumber: '4242' }) })
    assert.deepEqual([...await dir.withClient(async (c) => await dir.absentWith(c, ['tx4', 'tx5', 'tx6']))].sort(), ['tx4', 'tx6'])
    const mid = await allDns()
    await assert.rejects(dir.addUsersInTransaction(['tx4', 'tx5', 'tx6'].map((n) => user(n))), { name: 'AlreadyExistsError' })
    assert.deepEqual(await allDns(), mid, 'a failed transaction wrote nothing')
    assert.equal(mid.length, before.length + 7)
    for (const n of ['tx1', 'tx2', 'tx3']) await dir.deleteUser(n)
    await admin(async (c) => { await c.del(`cn=tx5,ou=groups,${s.baseDn}`) })
    assert.deepEqual(await allDns(), before)
  })

  test('administrative lock and unlock', async () => {
    await dir.addUser(user('dora'))
    assert.equal(await dir.isLocked('dora'), false)
    await dir.lock('dora')
    assert.equal(await dir.isLocked('dora'), true)
    await dir.unlock('dora')
    assert.equal(await dir.isLocked('dora'), false)
    await dir.unlock('dora')
    await assert.rejects(dir.lock('nobody-here'), { name: 'NotFoundError' })
    await assert.rejects(dir.isLocked('nobody-here'), { name: 'NotFoundError' })
  })

  test('three wrong binds lock the account via ppolicy; unlock lets the right password in again', async () => {
    await dir.addUser(user('erin'))
    const dn = dir.userDn('erin')
    await admin(async (c) => { await c.modify(dn, new Change({ operation: 'replace', modification: new Attribute({ type: 'userPassword', values: ['right-pw'] }) })) })
    const bind = async (pw: string): Promise<void> => {
      const c = new Client({ url: s.url, tlsOptions: { ca: [s.ca] } })
      try { await c.bind(dn, pw) } finally { await c.unbind().catch(() => {}) }
    }
    await bind('right-pw')
    for (let i = 0; i < 3; i++) await assert.rejects(bind('wrong'), InvalidCredentialsError)
    assert.equal(await dir.isLocked('erin'), true)
    await assert.rejects(bind('right-pw'), InvalidCredentialsError)
    await dir.unlock('erin')
    assert.equal(await dir.isLocked('erin'), false)
    await bind('right-pw')
  })

  test('hostile names, gecos and keys are refused with nothing written', async () => {
    const before = await allDns()
    const names = ['*', 'a*', 'x)(uid=*', 'a\\b', 'a,ou=groups', 'a=b', 'a\0b', 'root', 'postmaster', 'abuse', 'localguy', 'a'.repeat(33), 'Alice']
    for (const name of names) await assert.rejects(dir.addUser(user('okname', { name })), { code: 'bad-request' }, JSON.stringify(name))
    for (const gecos of ['*', 'a(b)', 'x\\y', 'a,b', 'a=b', 'nul\0', 'a'.repeat(129)]) {
      await assert.rejects(dir.addUser(user('gina', { gecos })), { name: 'InvalidGecosError' }, JSON.stringify(gecos))
    }
    await assert.rejects(dir.addUser(user('gina', { keys: [ed25519PrivatePem()] })), /PRIVATE key/)
    await assert.rejects(dir.addUser(user('gina', { keys: [`ssh-ed25519 ${Buffer.alloc(1 << 20).toString('base64')}`] })), /larger than/)
    await assert.rejects(dir.addUser(user('gina', { keys: ['garbage'] })), { name: 'InvalidSshKeyError' })
    await assert.rejects(dir.addUser(user('taken')), { name: 'UidCollisionError' })
    await assert.rejects(dir.addUser(user('gina', { uidNumber: 1000 })), { name: 'UidCollisionError' })
    assert.deepEqual(await allDns(), before)
    assert.equal(await dir.getUser('*'), null)
    assert.equal(await dir.getUser('x)(uid=*'), null)
  })

  test('StartTLS works with the custom CA; another CA is refused', async () => {
    const init = { baseDn: s.baseDn, bindDn: s.bindDn, bindPassword: s.bindPassword, timeoutMs: 3000 }
    const tls = new LdapDirectory({ ...init, url: s.starttlsUrl, ca: s.ca, startTls: true }, { logger, localAccounts: local })
    assert.ok(Array.isArray(await tls.listUsers()))
    const other = new LdapDirectory({ ...init, url: s.url, ca: s.otherCa }, { logger, localAccounts: local })
    await assert.rejects(other.listUsers(), (err: Error & { code?: string }) => /SELF_SIGNED|certificate/i.test(`${err.code ?? ''} ${err.message}`))
    const otherTls = new LdapDirectory({ ...init, url: s.starttlsUrl, ca: s.otherCa, startTls: true }, { logger, localAccounts: local })
    await assert.rejects(otherTls.listUsers())
  })
})
