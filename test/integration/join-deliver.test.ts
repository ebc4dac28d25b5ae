import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { connectService, type ServiceEvent } from '../../src/sdk/index.js'
import { PeerProcess, createTestUser, joinPeers } from '../_util/peers.js'
import { waitFor } from '../_util/wait.js'

// Two real centerd processes, each with its own PostgreSQL database and keys,
// joined only through centerctl, then a service on A reaches a service on B.
let a: PeerProcess
let b: PeerProcess
let user: Awaited<ReturnType<typeof createTestUser>>

before(async () => {
  user = await createTestUser()
  a = await PeerProcess.create({ name: 'a' })
  b = await PeerProcess.create({ name: 'b' })
  await a.start()
  await b.start()
})

after(async () => {
  await a?.destroy()
  await b?.destroy()
  await user?.remove()
})

test('two peers join by invite, join and approve, and list each other', async () => {
  const status = await a.ctl('status')
  assert.equal(status.database, 'postgresql', 'the real-PostgreSQL path is the one under test')
  await joinPeers(a, b, user.name)
  const listA = await a.ctl('peer', 'list')
  const listB = await b.ctl('peer', 'list')
  assert.deepEqual(listA.map((p: any) => p.uuid), [b.uuid])
  assert.deepEqual(listB.map((p: any) => p.uuid), [a.uuid])
  assert.equal(listA[0].domain, 'b.center.test')
  const ping = await a.ctl('peer', 'ping', b.uuid)
  assert.ok(ping.ms > 0 && ping.ms < 5000, `ping took ${ping.ms} ms`)
  // a clean join refuses nothing on either side (no frame reaches a box before it knows the sender)
  assert.deepEqual(a.logs().filter((l) => l.msg === 'refused'), [])
  assert.deepEqual(b.logs().filter((l) => l.msg === 'refused'), [])
})

test('an approved event from a service on A reaches the approved service on B with meta.from = A', async () => {
  const sender = await a.ctl('service', 'add', 'board', '--send', 'board.post')
  const receiver = await b.ctl('service', 'add', 'board', '--receive', 'board.post')
  const got: ServiceEvent[] = []
  const rx = await connectService({ socket: b.servicesSocket, token: receiver.token })
  const tx = await connectService({ socket: a.servicesSocket, token: sender.token })
  try {
    await rx.subscribe(['board.post'], (ev) => { got.push(ev) })
    const data = { title: 'hello from a', body: 'ünïcode ✓', n: 42 }
    const meta = await tx.send('board.post', data, { to: b.uuid })
    assert.equal(meta.from, a.uuid)
    await waitFor('the event on B', () => got.length > 0, 15_000)
    assert.equal(got.length, 1)
    assert.equal(got[0]?.name, 'board.post')
    assert.deepEqual(got[0]?.data, data)
    assert.equal(got[0]?.meta.from, a.uuid)
    assert.equal(got[0]?.meta.to, b.uuid)
  } finally {
    await rx.close()
    await tx.close()
  }
})

test('a broadcast reaches every peer and the sending box\'s own subscribers', async () => {
  const sender = await a.ctl('service', 'add', 'news', '--send', 'news.item', '--receive', 'news.item')
  const receiver = await b.ctl('service', 'add', 'news', '--receive', 'news.item')
  const onA: ServiceEvent[] = []
  const onB: ServiceEvent[] = []
  const rxB = await connectService({ socket: b.servicesSocket, token: receiver.token })
  const svcA = await connectService({ socket: a.servicesSocket, token: sender.token })
  try {
    await rxB.subscribe(['news.item'], (ev) => { onB.push(ev) })
    await svcA.subscribe(['news.item'], (ev) => { onA.push(ev) })
    await svcA.send('news.item', { headline: 'x' })
    await waitFor('the broadcast on both boxes', () => onA.length === 1 && onB.length === 1, 15_000)
    assert.equal(onB[0]?.meta.to, '*')
  } finally {
    await rxB.close()
    await svcA.close()
  }
})
