import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { stat } from 'node:fs/promises'
import { createFixture, refusals, RawClient, sleep, waitFor, type Fixture } from './_util.js'

const MAX_INFLIGHT = 8
const MAX_LINE = 4096

let f: Fixture
before(async () => { f = await createFixture({ maxInflight: MAX_INFLIGHT, maxLine: MAX_LINE }) })
after(async () => { await f.close() })

test('the socket is group-accessible and start/stop are idempotent', async () => {
  assert.equal((await stat(f.socket)).mode & 0o777, 0o660)
  await f.server.start()
  await f.server.stop()
  await f.server.stop()
  await f.server.start()
  assert.equal((await stat(f.socket)).mode & 0o777, 0o660)
})

test('a good token gets a welcome with the grants and our peer id', async () => {
  const s = await f.registry.add('hello', { receive: ['hello.in'], send: ['hello.out'] })
  const c = new RawClient(f.socket)
  c.write({ op: 'hello', token: s.token })
  assert.deepEqual(await c.next(), { op: 'welcome', service: 'hello', peer: f.dispatcher.uuid, receive: ['hello.in'], send: ['hello.out'] })
  c.end()
})

test('a bad token is refused with bad-token, logged once, and the connection closed', async () => {
  const before = refusals(f.logs, 'bad-token').length
  const c = new RawClient(f.socket)
  c.write({ op: 'hello', token: 'nope' })
  const m = await c.next()
  assert.equal(m.op, 'error')
  assert.deepEqual(m.error, { name: 'BadTokenError', code: 'bad-token', message: 'unknown or revoked service token' })
  assert.ok(await c.isClosed())
  const logged = refusals(f.logs, 'bad-token').slice(before)
  assert.equal(logged.length, 1)
  assert.ok(!JSON.stringify(logged).includes('nope'), 'the token is never logged')
})

test('anything before hello is refused and the connection closed', async () => {
  const before = refusals(f.logs, 'bad-request').length
  const c = new RawClient(f.socket)
  c.write({ op: 'subscribe', id: 1, names: ['a.b'] })
  const m = await c.next()
  assert.deepEqual([m.op, m.id, m.error.code], ['error', 1, 'bad-request'])
  assert.ok(await c.isClosed())
  assert.equal(refusals(f.logs, 'bad-request').length - before, 1)
})

test('subscribing to an ungranted name is refused, nothing is subscribed, and the connection goes on', async () => {
  const s = await f.registry.add('sub-refused', { receive: ['sr.ok'], send: [] })
  const c = await RawClient.hello(f.socket, s.token)
  const before = refusals(f.logs, 'not-granted').length
  c.write({ op: 'subscribe', id: 'x', names: ['sr.ok', 'sr.secret'] })
  const m = await c.next()
  assert.deepEqual([m.op, m.id, m.error.name, m.error.code], ['error', 'x', 'NotGrantedError', 'not-granted'])
  const logged = refusals(f.logs, 'not-granted').slice(before)
  assert.equal(logged.length, 1)
  assert.deepEqual([logged[0].service, logged[0].event, logged[0].level], ['sub-refused', 'sr.secret', 40])
  // nothing subscribed: sr.ok is not delivered
  await f.dispatcher.inject('sr.ok', 1)
  await sleep(100)
  assert.equal(c.received.length, 0)
  c.write({ op: 'subscribe', id: 'y', names: ['sr.ok'] })
  assert.deepEqual(await c.next(), { op: 'subscribed', id: 'y', names: ['sr.ok'] })
  c.end()
})

test('sending an ungranted name is refused, logged once, and queues nothing', async () => {
  const s = await f.registry.add('send-refused', { receive: [], send: ['sn.ok'] })
  const c = await RawClient.hello(f.socket, s.token)
  const before = refusals(f.logs, 'not-granted').length
  const maxBefore = await f.dispatcher.maxInboxId()
  c.write({ op: 'send', id: 1, name: 'sn.secret', to: '*', data: {} })
  const m = await c.next()
  assert.deepEqual([m.op, m.id, m.error.code], ['error', 1, 'not-granted'])
  const logged = refusals(f.logs, 'not-granted').slice(before)
  assert.equal(logged.length, 1)
  assert.deepEqual([logged[0].service, logged[0].event], ['send-refused', 'sn.secret'])
  c.write({ op: 'send', id: 2, name: 'sn.ok', to: '*', data: { hi: 1 } })
  const sent = await c.next()
  assert.deepEqual([sent.op, sent.id, sent.meta.from, sent.meta.to], ['sent', 2, f.dispatcher.uuid, '*'])
  assert.equal(await f.dispatcher.maxInboxId(), maxBefore + 1)
  c.end()
})

test('events arrive in id order, at most maxInflight unacked, expired ones skipped; acks are saved', async () => {
  const s = await f.registry.add('order', { receive: ['ord.a', 'ord.b'], send: [] })
  const ids: number[] = []
  await f.dispatcher.inject('ord.a', 'expired', { ttl: -1 })
  for (let i = 0; i < 20; i++) ids.push(await f.dispatcher.inject(i % 2 === 0 ? 'ord.a' : 'ord.b', i))
  const c = await RawClient.hello(f.socket, s.token)
  c.write({ op: 'subscribe', id: 1, names: ['ord.a', 'ord.b'] })
  await c.next((m) => m.op === 'subscribed')
  const got: Array<Record<string, any>> = []
  for (let i = 0; i < MAX_INFLIGHT; i++) got.push(await c.next())
  await sleep(100)
  assert.equal(c.received.length, 0, 'flow control: nothing past maxInflight before an ack')
  while (got.length < 20) {
    if (got.length % MAX_INFLIGHT === 0) c.write({ op: 'ack', upTo: got[got.length - 1].id })
    got.push(await c.next())
  }
  assert.deepEqual(got.map((m) => m.id), ids)
  assert.deepEqual(got.map((m) => m.data), Array.from({ length: 20 }, (_, i) => i))
  assert.equal(got[0].meta.to, f.dispatcher.uuid)
  c.write({ op: 'ack', upTo: ids[19] })
  await waitFor(async () => (await f.registry.get('order')).delivered === ids[19], 2000, 'delivered cursor')
  c.end()
})

test('an ack beyond what was sent is refused', async () => {
  const s = await f.registry.add('bad-ack', { receive: [], send: [] })
  const c = await RawClient.hello(f.socket, s.token)
  const before = refusals(f.logs, 'bad-request').length
  c.write({ op: 'ack', upTo: 1e12 })
  assert.equal((await c.next()).error.code, 'bad-request')
  assert.equal(refusals(f.logs, 'bad-request').length - before, 1)
  c.end()
})

test('grant changes apply to a live connection without restart', async () => {
  const s = await f.registry.add('live', { receive: ['lv.a'], send: [] })
  const c = await RawClient.hello(f.socket, s.token)
  c.write({ op: 'subscribe', id: 1, names: ['lv.a'] })
  await c.next()
  await f.dispatcher.inject('lv.a', 1)
  assert.equal((await c.next()).data, 1)

  await f.registry.update('live', { receive: ['lv.b'], send: ['lv.out'] })
  assert.deepEqual(await c.next(), { op: 'grants', receive: ['lv.b'], send: ['lv.out'] })
  await f.dispatcher.inject('lv.a', 2)
  c.write({ op: 'subscribe', id: 2, names: ['lv.b'] })
  assert.equal((await c.next()).op, 'subscribed')
  await f.dispatcher.inject('lv.b', 3)
  const ev = await c.next()
  assert.deepEqual([ev.name, ev.data], ['lv.b', 3], 'lv.a (no longer granted) was not delivered')
  c.write({ op: 'send', id: 3, name: 'lv.out', data: null })
  assert.equal((await c.next()).op, 'sent')
  c.end()
})

test('revoking a service closes its live connections with bad-token, logged once', async () => {
  const s = await f.registry.add('doomed', { receive: [], send: [] })
  const c = await RawClient.hello(f.socket, s.token)
  const before = refusals(f.logs, 'bad-token').length
  await f.registry.revoke('doomed')
  const m = await c.next()
  assert.deepEqual([m.op, m.error.code, m.error.message], ['error', 'bad-token', 'token revoked'])
  assert.ok(await c.isClosed())
  const logged = refusals(f.logs, 'bad-token').slice(before)
  assert.equal(logged.length, 1)
  assert.equal(logged[0].service, 'doomed')
})

test('an oversized line is refused with frame-too-large and the connection closed', async () => {
  const s = await f.registry.add('big', { receive: [], send: ['big.x'] })
  const c = await RawClient.hello(f.socket, s.token)
  const before = refusals(f.logs, 'frame-too-large').length
  // whole line in one write: the limit must hold even when the newline arrives in the same chunk
  c.write({ op: 'send', id: 1, name: 'big.x', data: 'x'.repeat(MAX_LINE) })
  const m = await c.next()
  assert.deepEqual([m.op, m.error.name, m.error.code], ['error', 'FrameTooLargeError', 'frame-too-large'])
  assert.ok(await c.isClosed())
  assert.equal(refusals(f.logs, 'frame-too-large').length - before, 1)
})

test('an unterminated oversized line is refused too', async () => {
  const c = new RawClient(f.socket)
  c.sock.write('{"op":"hello","token":"' + 'x'.repeat(MAX_LINE * 2))
  assert.equal((await c.next()).error.code, 'frame-too-large')
  assert.ok(await c.isClosed())
})

test('invalid JSON after hello is refused with invalid-json and the connection stays usable', async () => {
  const s = await f.registry.add('garbled', { receive: ['gb.a'], send: [] })
  const c = await RawClient.hello(f.socket, s.token)
  const before = refusals(f.logs, 'invalid-json').length
  c.sock.write('{not json\n')
  const m = await c.next()
  assert.deepEqual([m.op, m.error.name, m.error.code], ['error', 'InvalidJsonError', 'invalid-json'])
  assert.equal(refusals(f.logs, 'invalid-json').length - before, 1)
  c.write({ op: 'subscribe', id: 1, names: ['gb.a'] })
  assert.equal((await c.next()).op, 'subscribed')
  c.end()
})

test('invalid JSON before hello closes the connection', async () => {
  const c = new RawClient(f.socket)
  c.sock.write('nope\n')
  assert.equal((await c.next()).error.code, 'invalid-json')
  assert.ok(await c.isClosed())
})

test('pipelined sends are batched into few submits, keep their order and each get an answer', async () => {
  const s = await f.registry.add('burst', { receive: [], send: ['bu.x'] })
  const c = await RawClient.hello(f.socket, s.token)
  const n = 2000
  const from = await f.dispatcher.maxInboxId()
  const batchesBefore = f.dispatcher.batches.length
  let lines = ''
  for (let i = 0; i < n; i++) lines += JSON.stringify({ op: 'send', id: i, name: 'bu.x', data: i, nonce: `b${i}` }) + '\n'
  c.sock.write(lines)
  await waitFor(() => c.received.length >= n, 10_000, 'all answers')
  assert.deepEqual(new Set(c.received.map((m) => m.op)), new Set(['sent']))
  assert.deepEqual(c.received.map((m) => m.id).sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i))
  const calls = f.dispatcher.batches.length - batchesBefore
  assert.ok(calls < n / 10, `${calls} submit calls for ${n} sends`)
  const rows = await f.dispatcher.readInbox(from, ['bu.x'], n + 1)
  assert.deepEqual(rows.map((r) => r.envelope.data), Array.from({ length: n }, (_, i) => i))
  c.end()
})

test('a connection that never says hello is closed after the hello timeout', async () => {
  const g = await createFixture({ helloTimeoutMs: 100 })
  try {
    const sock = connect(g.socket)
    sock.on('error', () => {})
    sock.resume()
    const closed = new Promise((resolve) => sock.on('close', resolve))
    await closed
  } finally {
    await g.close()
  }
})
