import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { connectService, type ServiceEvent } from '../../src/sdk/index.js'
import { PeerProcess, createTestUser, joinPeers } from '../_util/peers.js'
import { waitFor } from '../_util/wait.js'

// The README's tour runs on embedded PGlite: the one-statement send commit
// and receive accept (data-modifying CTEs, arrays as parameters), the inbox
// served from memory, and the rest of delivery must work there too, across a
// restart of the receiver.
let a: PeerProcess
let b: PeerProcess
let user: Awaited<ReturnType<typeof createTestUser>>

before(async () => {
  user = await createTestUser()
  a = await PeerProcess.create({ name: 'emb-a', embedded: true })
  b = await PeerProcess.create({ name: 'emb-b', embedded: true })
  await a.start()
  await b.start()
  await joinPeers(a, b, user.name)
})

after(async () => {
  await a?.destroy()
  await b?.destroy()
  await user?.remove()
})

test('two embedded peers deliver 300 events in order, exactly once, across a restart of the receiver', async () => {
  assert.equal((await a.ctl('status')).database, 'pglite')
  const sender = await a.ctl('service', 'add', 'board', '--send', 'board.post')
  const receiver = await b.ctl('service', 'add', 'board', '--receive', 'board.post')
  const got: number[] = []
  const onEvent = (ev: ServiceEvent): void => { got.push((ev.data as { i: number }).i) }
  const tx = await connectService({ socket: a.servicesSocket, token: sender.token })
  let rx = await connectService({ socket: b.servicesSocket, token: receiver.token })
  try {
    await rx.subscribe(['board.post'], onEvent)
    await Promise.all(Array.from({ length: 150 }, async (_, i) => await tx.send('board.post', { i }, { to: b.uuid })))
    await waitFor('the first 150 on B', () => got.length >= 150, 30_000)
    await rx.close()
    await b.stop()
    await Promise.all(Array.from({ length: 150 }, async (_, i) => await tx.send('board.post', { i: 150 + i }, { to: b.uuid })))
    await b.start()
    rx = await connectService({ socket: b.servicesSocket, token: receiver.token })
    await rx.subscribe(['board.post'], onEvent)
    await waitFor('all 300 on B', () => got.length >= 300, 30_000)
    assert.deepEqual(got, Array.from({ length: 300 }, (_, i) => i))
    assert.deepEqual(b.logs().filter((l) => l.msg === 'refused'), [])
  } finally {
    await rx.close()
    await tx.close()
  }
})
