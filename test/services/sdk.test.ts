import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { connectService, ServiceError, type ServiceEvent } from '../../src/sdk/index.js'
import { createFixture, refusals, sleep, waitFor, type Fixture } from './_util.js'

let f: Fixture
before(async () => { f = await createFixture() })
after(async () => { await f.close() })

test('events are handed over one at a time, in order, and acked after the handler resolves', async () => {
  const s = await f.registry.add('sdk-order', { receive: ['so.a'], send: [] })
  const svc = await connectService({ socket: f.socket, token: s.token })
  const seen: number[] = []
  let busy = 0
  let overlap = false
  await svc.subscribe(['so.a'], async (ev) => {
    if (++busy > 1) overlap = true
    await sleep(2)
    seen.push(ev.data as number)
    busy--
  })
  let last = 0
  for (let i = 0; i < 30; i++) last = await f.dispatcher.inject('so.a', i)
  await waitFor(() => seen.length === 30)
  assert.deepEqual(seen, Array.from({ length: 30 }, (_, i) => i))
  assert.equal(overlap, false)
  await waitFor(async () => (await f.registry.get('sdk-order')).delivered === last, 2000, 'acks saved')
  await svc.close()
  await svc.close()
})

test('refusals reject the matching call with the server\'s name and code, logged once', async () => {
  const s = await f.registry.add('sdk-refused', { receive: ['sr.ok'], send: ['sr.ok'] })
  const svc = await connectService({ socket: f.socket, token: s.token })
  const before = refusals(f.logs, 'not-granted').length
  await assert.rejects(svc.subscribe(['sr.secret'], () => {}), (err: unknown) => {
    assert.ok(err instanceof ServiceError)
    assert.deepEqual([err.name, err.code], ['NotGrantedError', 'not-granted'])
    return true
  })
  await assert.rejects(svc.send('sr.secret', {}), { name: 'NotGrantedError', code: 'not-granted' })
  assert.equal(refusals(f.logs, 'not-granted').length - before, 2)
  const meta = await svc.send('sr.ok', { a: 1 })
  assert.deepEqual([meta.from, meta.to], [f.dispatcher.uuid, '*'])
  await svc.close()
})

test('a bad token rejects connectService with BadTokenError', async () => {
  await assert.rejects(connectService({ socket: f.socket, token: 'wrong' }), { name: 'BadTokenError', code: 'bad-token' })
})

test('exactly once to the handler across a server restart', async () => {
  const s = await f.registry.add('sdk-once', { receive: ['once.a'], send: [] })
  const svc = await connectService({ socket: f.socket, token: s.token })
  const ids: number[] = []
  let reconnected = 0
  svc.on('connected', () => { reconnected++ })
  await svc.subscribe(['once.a'], async (ev: ServiceEvent) => {
    ids.push(ev.id)
    await sleep(1)
  })
  const sent: number[] = []
  for (let i = 0; i < 60; i++) sent.push(await f.dispatcher.inject('once.a', i))
  await waitFor(() => ids.length >= 20)
  // restart while events are in flight and acks not yet saved
  await f.server.stop()
  await f.server.start()
  for (let i = 60; i < 100; i++) sent.push(await f.dispatcher.inject('once.a', i))
  await waitFor(() => ids.length >= 100, 8000, 'all events')
  await sleep(100)
  assert.equal(reconnected, 1)
  assert.deepEqual(ids, sent)
  await svc.close()
})

test('a send whose answer was lost is re-sent with the same nonce and queued once', async () => {
  const s = await f.registry.add('sdk-retry', { receive: [], send: ['rt.x'] })
  const svc = await connectService({ socket: f.socket, token: s.token })
  const from = await f.dispatcher.maxInboxId()
  const dupBefore = f.dispatcher.duplicates
  // the dispatcher commits, then the daemon goes away before the answer is written
  f.dispatcher.afterCommit = async () => {
    await f.server.stop()
    setTimeout(() => { f.server.start().catch(() => {}) }, 50)
  }
  const [a, b] = await Promise.all([svc.send('rt.x', 'first'), svc.send('rt.x', 'second')])
  assert.equal(typeof a.iat, 'number')
  assert.equal(typeof b.iat, 'number')
  const rows = await f.dispatcher.readInbox(from, ['rt.x'], 10)
  assert.deepEqual(rows.map((r) => r.envelope.data), ['first', 'second'])
  assert.equal(f.dispatcher.duplicates - dupBefore, 2)
  await svc.close()
})

test('revoking the service ends the client: disconnected, no reconnect, calls reject', async () => {
  const s = await f.registry.add('sdk-revoked', { receive: [], send: ['rv.x'] })
  const svc = await connectService({ socket: f.socket, token: s.token })
  const disconnected = new Promise<Error | undefined>((resolve) => svc.once('disconnected', resolve))
  await f.registry.revoke('sdk-revoked')
  const err = await disconnected
  assert.equal((err as ServiceError).code, 'bad-token')
  await assert.rejects(svc.send('rv.x', 1), { code: 'bad-token' })
  await sleep(300)
  assert.equal(f.server.connections, 0, 'it did not reconnect')
  await svc.close()
})

test('live grant changes reach the client', async () => {
  const s = await f.registry.add('sdk-grants', { receive: ['gr.a'], send: [] })
  const svc = await connectService({ socket: f.socket, token: s.token })
  const changed = new Promise((resolve) => svc.once('grants', resolve))
  await f.registry.update('sdk-grants', { send: ['gr.b'] })
  assert.deepEqual(await changed, { receive: ['gr.a'], send: ['gr.b'] })
  await svc.send('gr.b', null)
  await svc.close()
})
