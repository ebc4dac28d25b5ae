import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { Database } from '../../src/db/index.js'
import { Dispatcher } from '../../src/dispatcher/index.js'
import { Inbox } from '../../src/dispatcher/inbox.js'
import type { Envelope } from '../../src/wire/envelope.js'
import { createTestDatabase } from '../_util/pg.js'

// The real outbox and inbox on real PostgreSQL.
const SELF = '00000000-0000-4000-8000-0000000000aa'
const OTHER = '00000000-0000-4000-8000-0000000000cc'
const queued: Array<Map<string, number>> = []
let database: Database
let drop: () => Promise<void>
let d: Dispatcher

before(async () => {
  const t = await createTestDatabase('center_outbox')
  drop = t.drop
  database = Database.open({ url: t.url, pgliteDir: '' }, { logger: pino({ level: 'silent' }) })
  await database.migrateToLatestOrThrow()
  await database.db.insertInto('peer_seq').values({ peer_uuid: OTHER, next_out: 1, last_in: 0 }).execute()
  d = new Dispatcher({ defaultTtlSeconds: 600, maxTtlSeconds: 3600, maxEventBytes: 65_536 }, {
    db: database.db, logger: pino({ level: 'silent' }), self: SELF, activePeers: () => [OTHER], isActivePeer: (u) => u === OTHER, onQueued: (tops) => { queued.push(tops) }
  })
  await d.load()
})

after(async () => {
  await database?.close()
  await drop?.()
})

const ev = (data: number, nonce?: string, to = SELF): { name: string, to: string, data: number, nonce?: string } => ({ name: 'ob.x', to, data, ...(nonce !== undefined ? { nonce } : {}) })

// A send retried with the same nonce is queued once, whether the copies arrive
// in one request, in several requests of one group commit, or in a later
// commit; another service's nonce is its own.
test('a nonce is queued once per service: within a request, across the requests of one commit, and in a later commit', async () => {
  const from = await d.maxInboxId()
  // the first submit commits alone; the others queue behind it and share the next commit
  await Promise.all([
    d.submit('svc-a', [ev(0, 'n0')]),
    d.submit('svc-a', [ev(1, 'n1'), ev(2, 'n1')]),
    d.submit('svc-a', [ev(3, 'n1')]),
    d.submit('svc-b', [ev(4, 'n1')]),
    d.submit('svc-a', [ev(5, 'n0')]),
    d.submit('svc-a', [ev(6), ev(7)])
  ])
  await d.submit('svc-b', [ev(8, 'n1'), ev(9, 'n9')])
  const rows = await d.readInbox(from, ['ob.x'], 100)
  assert.deepEqual(rows.map((r) => r.envelope.data), [0, 1, 4, 6, 7, 9])
})

test('events for another peer only (one statement): consecutive sequence numbers, a nonce queued once, the link told the top', async () => {
  const o = (data: number, nonce?: string): ReturnType<typeof ev> => ev(data, nonce, OTHER)
  await Promise.all([
    d.submit('svc-a', [o(0, 'm0')]),
    d.submit('svc-a', [o(1, 'm1'), o(2, 'm1')]),
    d.submit('svc-a', [o(3, 'm1')]),
    d.submit('svc-b', [o(4, 'm1')]),
    d.submit('svc-a', [o(5, 'm0')]),
    d.submit('svc-a', [o(6), o(7)])
  ])
  await d.submit('svc-b', [o(8, 'm1'), o(9, 'm9')])
  const rows = await database.db.selectFrom('outbox').select(['seq', 'envelope']).where('peer_uuid', '=', OTHER).orderBy('seq').execute()
  assert.deepEqual(rows.map((r) => Number(r.seq)), [1, 2, 3, 4, 5, 6])
  assert.deepEqual(rows.map((r) => JSON.parse(r.envelope).data), [0, 1, 4, 6, 7, 9])
  assert.equal(queued.at(-1)?.get(OTHER), 6)
  const seq = await database.db.selectFrom('peer_seq').select('next_out').where('peer_uuid', '=', OTHER).executeTakeFirstOrThrow()
  assert.equal(Number(seq.next_out), 7)
  // a broadcast takes the transaction path and numbers on from there
  await d.submit('svc-a', [ev(10, undefined, '*')])
  assert.equal(queued.at(-1)?.get(OTHER), 7)
})

test('the inbox hands out its newest rows from memory exactly as the database holds them, and nothing prune removed', async () => {
  const PEER = '00000000-0000-4000-8000-0000000000bb'
  const from = await d.maxInboxId()
  const iat = Math.floor(Date.now() / 1000)
  const rows = ['ob.y', 'ob.z', 'ob.y', 'ob.y'].map((name, i) => {
    const envelope: Envelope = { name, meta: { from: PEER, to: SELF, iat, exp: iat + 600 }, data: { i } }
    return { from: PEER, seq: i + 1, envelope, json: JSON.stringify(envelope) }
  })
  await d.inbox.acceptFrame({ from: PEER, rows, lastIn: 4, session: Uint8Array.of(1, 2, 3) })
  const fromMemory = await d.readInbox(from, ['ob.y'], 10)
  assert.deepEqual(fromMemory.map((r) => (r.envelope.data as { i: number }).i), [0, 2, 3])
  // a new Inbox over the same database has nothing in memory: it reads the table
  const cold = new Inbox(database.db)
  await cold.load()
  assert.deepEqual(await cold.read(from, ['ob.y'], 10), fromMemory, 'same ids, same envelopes')
  assert.deepEqual(await d.readInbox(fromMemory[0]?.id as number, ['ob.y', 'ob.z'], 2), await cold.read(fromMemory[0]?.id as number, ['ob.y', 'ob.z'], 2), 'a cursor and a limit')
  // more rows than memory keeps (8,192): a reader behind them is served from the table, one near the top from memory, alike
  const start = await d.maxInboxId()
  for (let f = 0; f < 9; f++) {
    const many = Array.from({ length: 1000 }, (_, i) => {
      const envelope: Envelope = { name: 'ob.y', meta: { from: PEER, to: SELF, iat, exp: iat + 600 }, data: { i: 10 + f * 1000 + i } }
      return { from: PEER, seq: 5 + f * 1000 + i, envelope, json: JSON.stringify(envelope) }
    })
    await d.inbox.acceptFrame({ from: PEER, rows: many, lastIn: 4 + (f + 1) * 1000, session: Uint8Array.of(1, 2, 3) })
  }
  const cold2 = new Inbox(database.db)
  await cold2.load()
  for (const after of [start, start + 500, start + 8500]) {
    const got = await d.readInbox(after, ['ob.y'], 10_000)
    assert.deepEqual(got, await cold2.read(after, ['ob.y'], 10_000), `reading after ${after - start}`)
    assert.equal(got.length, 9000 - (after - start))
  }
  // no active service: prune drops every row, and memory follows
  assert.ok(await d.inbox.prune(iat) >= 9004)
  assert.deepEqual(await d.readInbox(from, ['ob.y', 'ob.z'], 10), [])
})
