import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createLiveness, createPeerTable, nodeIdOf, type PeerTable } from '../../src/peer-table/index.js'
import { testUuid, wireOf } from './_testnet.js'

const SELF = testUuid(0, 'self')

/** Uuids whose ids sit in the half of the key space away from SELF: one bucket that cannot split. */
function farUuids (n: number): string[] {
  const selfBit = (nodeIdOf(SELF)[0] as number) & 0x80
  const out: string[] = []
  for (let i = 1; out.length < n; i++) {
    const u = testUuid(i, 'far')
    if (((nodeIdOf(u)[0] as number) & 0x80) !== selfBit) out.push(u)
  }
  return out
}

/** k = 2, with two old contacts in the far bucket. */
function fullTable (now: () => number): { table: PeerTable, old: string[], candidate: string } {
  const [a, b, c] = farUuids(3) as [string, string, string]
  const table = createPeerTable({ k: 2 }, { self: { uuid: SELF }, now })
  table.add({ ...wireOf(a), lastSeen: 1 })
  table.add({ ...wireOf(b), lastSeen: 2 })
  return { table, old: [a, b], candidate: c }
}

test('a full bucket raises a ping; the dead oldest contact is evicted and the candidate takes its place', async () => {
  const now = (): number => 1_000_000
  const { table, old: [dead, alive], candidate } = fullTable(now) as { table: PeerTable, old: [string, string], candidate: string }
  const pinged: string[] = []
  const liveness = createLiveness({ freshFor: 10, pingTimeout: 1000 }, {
    table,
    now,
    ping: async (c) => {
      pinged.push(c.uuid)
      if (c.uuid === dead) throw new Error('no answer')
    }
  })
  await liveness.start()
  assert.equal(table.add(wireOf(candidate)), 'pending')
  await liveness.idle()
  assert.deepEqual(pinged.sort(), [dead, alive].sort())
  assert.equal(table.get(dead), undefined, 'dead contact evicted')
  assert.ok(table.get(alive) !== undefined, 'live contact kept')
  assert.equal(table.get(alive)?.lastSeen, 1_000_000, 'live contact marked seen')
  assert.ok(table.get(candidate) !== undefined, 'candidate admitted in the freed slot')
  await liveness.stop()
})

test('when every old contact answers, they stay and the candidate is dropped', async () => {
  const now = (): number => 1_000_000
  const { table, old, candidate } = fullTable(now)
  const liveness = createLiveness({ freshFor: 10 }, { table, now, ping: async () => {} })
  await liveness.start()
  table.add(wireOf(candidate))
  await liveness.idle()
  for (const u of old) assert.ok(table.get(u) !== undefined)
  assert.equal(table.get(candidate), undefined)
  // the oldest is now the most recent: the next ping goes to the other one first
  assert.deepEqual(table.toJSON().contacts.map(c => c.uuid).length, 2)
  await liveness.stop()
})

test('a ping that never answers times out and evicts; recently seen contacts are not pinged', async () => {
  let t = 1_000_000
  const now = (): number => t
  const { table, old: [a, b], candidate } = fullTable(now) as { table: PeerTable, old: [string, string], candidate: string }
  table.touch(b, t) // b was just heard from
  const pinged: string[] = []
  const liveness = createLiveness({ pingTimeout: 20, freshFor: 60_000 }, {
    table,
    now,
    ping: async (c, signal) => {
      pinged.push(c.uuid)
      await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
    }
  })
  await liveness.start()
  table.add(wireOf(candidate))
  t += 30
  await liveness.idle()
  assert.deepEqual(pinged, [a])
  assert.equal(table.get(a), undefined)
  assert.ok(table.get(b) !== undefined)
  assert.ok(table.get(candidate) !== undefined)
  await liveness.stop()
})

test('stop() aborts pending pings without evicting anyone, and is idempotent', async () => {
  const now = (): number => 1_000_000
  const { table, old, candidate } = fullTable(now)
  const liveness = createLiveness({ freshFor: 10, pingTimeout: 60_000 }, {
    table,
    now,
    ping: async (_c, signal) => {
      await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
    }
  })
  await liveness.start()
  await liveness.start()
  table.add(wireOf(candidate))
  await liveness.stop()
  await liveness.stop()
  for (const u of old) assert.ok(table.get(u) !== undefined)
  assert.equal(table.get(candidate), undefined)
  assert.equal(process.getActiveResourcesInfo().filter(r => r === 'Timeout').length, 0)
})
