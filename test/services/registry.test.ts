import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { serviceAdminMethods } from '../../src/cli/commands/service.js'
import { createFixture, type Fixture } from './_util.js'

let f: Fixture
before(async () => { f = await createFixture() })
after(async () => { await f.close() })

test('add returns a 32-byte base64url token and stores only its SHA-256', async () => {
  const s = await f.registry.add('store-check', { receive: ['a.x', 'a.x', 'a.y'], send: [] })
  assert.match(s.token, /^[A-Za-z0-9_-]{43}$/)
  assert.deepEqual(s.receive, ['a.x', 'a.y'], 'lists are deduplicated')
  const row = await f.database.db.selectFrom('services').selectAll().where('name', '=', 'store-check').executeTakeFirstOrThrow()
  assert.deepEqual(row.token_sha256, createHash('sha256').update(s.token).digest())
  assert.ok(!JSON.stringify(row).includes(s.token))
})

test('a new service starts at the end of the inbox: no history', async () => {
  const id = await f.dispatcher.inject('hist.old', 1)
  await f.registry.add('late', { receive: ['hist.old'], send: [] })
  assert.equal((await f.registry.get('late')).delivered, id)
})

test('an active name cannot be added twice; a revoked one can, with a new token', async () => {
  const a = await f.registry.add('twice', { receive: [], send: [] })
  await assert.rejects(f.registry.add('twice', { receive: [], send: [] }), { name: 'ConflictError', code: 'conflict' })
  await f.registry.revoke('twice')
  const b = await f.registry.add('twice', { receive: ['x.y'], send: [] })
  assert.notEqual(a.token, b.token)
  await assert.rejects(f.registry.authenticate(a.token), { code: 'bad-token' })
  assert.equal((await f.registry.authenticate(b.token)).name, 'twice')
})

test('names and grant lists are validated', async () => {
  await assert.rejects(f.registry.add('Bad', { receive: [], send: [] }), { code: 'bad-request' })
  await assert.rejects(f.registry.add('9lives', { receive: [], send: [] }), { code: 'bad-request' })
  await assert.rejects(f.registry.add('x'.repeat(33), { receive: [], send: [] }), { code: 'bad-request' })
  await assert.rejects(f.registry.add('ok', { receive: ['Not_Kebab'], send: [] }), { code: 'bad-request' })
  // un-prefixed names are RFC 3's own (peer-table, excommunication, ...): no service may hold them
  await assert.rejects(f.registry.add('ok', { receive: ['excommunication'], send: [] }), /reserved for the daemon/)
  await assert.rejects(f.registry.add('ok', { receive: [], send: ['peer-table'] }), /reserved for the daemon/)
  const many = Array.from({ length: 257 }, (_, i) => `ok.e${i}`)
  await assert.rejects(f.registry.add('ok', { receive: many, send: [] }), /at most 256/)
  await f.registry.add('ok', { receive: many.slice(0, 256), send: [] })
})

test('authenticate refuses unknown and revoked tokens alike, without echoing them', async () => {
  const s = await f.registry.add('auth', { receive: [], send: [] })
  assert.equal((await f.registry.authenticate(s.token)).name, 'auth')
  const unknown = await f.registry.authenticate('not-a-real-token').catch((e: Error) => e)
  await f.registry.revoke('auth')
  const revoked = await f.registry.authenticate(s.token).catch((e: Error) => e)
  for (const err of [unknown, revoked]) {
    assert.ok(err instanceof Error)
    assert.equal(err.name, 'BadTokenError')
    assert.equal(err.message, 'unknown or revoked service token')
  }
  await assert.rejects(f.registry.authenticate(42), { code: 'bad-token' })
})

test('setDelivered never moves the cursor back', async () => {
  await f.registry.add('cursor', { receive: [], send: [] })
  await f.registry.setDelivered('cursor', 100)
  await f.registry.setDelivered('cursor', 50)
  assert.equal((await f.registry.get('cursor')).delivered, 100)
})

test('update replaces lists and every change emits changed(name)', async () => {
  const seen: string[] = []
  const on = (n: string): void => { seen.push(n) }
  f.registry.on('changed', on)
  await f.registry.add('grants', { receive: ['a.b'], send: ['a.c'] })
  const r = await f.registry.update('grants', { receive: ['a.d'] })
  assert.deepEqual([r.receive, r.send], [['a.d'], ['a.c']])
  await f.registry.revoke('grants')
  await assert.rejects(f.registry.update('grants', { send: [] }), { code: 'not-found' })
  f.registry.off('changed', on)
  assert.deepEqual(seen, ['grants', 'grants', 'grants'])
})

test('admin methods validate params and return typed errors', async () => {
  const m = serviceAdminMethods(f.registry)
  const added = await m['service.add']({ name: 'adm', receive: ['p.q'] }) as { token: string, send: string[] }
  assert.equal(typeof added.token, 'string')
  assert.deepEqual(added.send, [])
  await assert.rejects(m['service.add']({ name: 7 }), { code: 'bad-request' })
  await assert.rejects(m['service.add']({ name: 'adm2', receive: 'p.q' }), { code: 'bad-request' })
  await assert.rejects(m['service.update']({ name: 'adm' }), { code: 'bad-request' })
  const upd = await m['service.update']({ name: 'adm', send: ['p.r'] }) as { send: string[], createdAt: string }
  assert.deepEqual(upd.send, ['p.r'])
  assert.equal(typeof upd.createdAt, 'string')
  const all = await m['service.list']({}) as Array<{ name: string }>
  assert.ok(all.some((s) => s.name === 'adm'))
  assert.ok(!JSON.stringify(all).includes('token'))
  await m['service.revoke']({ name: 'adm' })
  await assert.rejects(m['service.revoke']({ name: 'adm' }), { code: 'not-found' })
})
