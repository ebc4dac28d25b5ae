import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import pg from 'pg'
import { connectService, type ServiceClient } from '../../src/sdk/index.js'
import { PeerProcess, createTestUser, joinPeers } from '../_util/peers.js'
import { waitFor } from '../_util/wait.js'

// A peer restored from an old backup (or with its ratchet state wiped) re-keys
// with its peers by itself, and no event is lost.
let a: PeerProcess
let b: PeerProcess
let user: Awaited<ReturnType<typeof createTestUser>>
let tx: ServiceClient
let rx: ServiceClient
const got: number[] = []

async function wipeRatchet (p: PeerProcess): Promise<number> {
  const url = /url = "([^"]+)"/.exec(readFileSync(p.configPath, 'utf8'))?.[1] as string
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  const r = await c.query('DELETE FROM ratchet_sessions')
  await c.end()
  return r.rowCount ?? 0
}

async function sendRange (from: number, to: number): Promise<void> {
  const sends: Array<Promise<unknown>> = []
  for (let i = from; i < to; i++) sends.push(tx.send('rk.item', { i }, { to: b.uuid }))
  await Promise.all(sends)
}

before(async () => {
  user = await createTestUser()
  a = await PeerProcess.create({ name: 'rk-a' })
  b = await PeerProcess.create({ name: 'rk-b' })
  await a.start()
  await b.start()
  await joinPeers(a, b, user.name)
  tx = await connectService({ socket: a.servicesSocket, token: (await a.ctl('service', 'add', 'rk', '--send', 'rk.item')).token })
  rx = await connectService({ socket: b.servicesSocket, token: (await b.ctl('service', 'add', 'rk', '--receive', 'rk.item')).token })
  await rx.subscribe(['rk.item'], (ev) => { got.push((ev.data as { i: number }).i) })
})

after(async () => {
  await tx?.close()
  await rx?.close()
  await a?.destroy()
  await b?.destroy()
  await user?.remove()
})

test('events flow before any state is lost', async () => {
  await sendRange(0, 50)
  await waitFor('50 events', () => got.length === 50)
})

test('B loses its ratchet state: events flow again with no manual step and none is lost', async () => {
  await b.stop()
  assert.ok(await wipeRatchet(b) >= 1, 'B had a session to lose')
  await sendRange(50, 100) // queued on A while B is down
  await b.start()
  await sendRange(100, 150)
  await waitFor('150 events after B re-keyed', () => got.length >= 150, 30_000)
  assert.deepEqual(got, Array.from({ length: 150 }, (_, i) => i))
})

test('A loses its ratchet state too: the same holds the other way round', async () => {
  await a.stop()
  assert.ok(await wipeRatchet(a) >= 1)
  await a.start()
  await sendRange(150, 200)
  await waitFor('200 events after A re-keyed', () => got.length >= 200, 30_000)
  assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => i))
  const ping = await b.ctl('peer', 'ping', a.uuid)
  assert.ok(ping.ms > 0)
})
