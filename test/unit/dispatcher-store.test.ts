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

/**
 * Events 0 to 9 to `to`, with copies retried under the same nonce (`p`0, `p`1,
 * `p`9); 0, 1, 4, 6, 7 and 9 are the ones that must be queued. The first
 * submit commits alone; the next five queue behind it and share one commit.
 */
async function submitWithRetries (to: string, p: string): Promise<void> {
  const e = (data: number, nonce?: string): ReturnType<typeof ev> => ev(data, nonce === undefined ? undefined : `${p}${nonce}`, to)
  await Promise.all([
    d.submit('svc-a', [e(0, '0')]),
    d.submit('svc-a', [e(1, '1'), e(2, '1')]),
    d.submit('svc-a', [e(3, '1')]),
    d.submit('svc-b', [e(4, '1')]),
    d.submit('svc-a', [e(5, '0')]),
    d.submit('svc-a', [e(6), e(7)])
  ])
  await d.submit('svc-b', [e(8, '1'), e(9, '9')])
}

// A send retried with the same nonce is queued once, whether the copies arrive
// in one request, in several requests of one group commit, or in a later
// commit; another service's nonce is its own.
test('a nonce is queued once per service: within a request, across the requests of one commit, and in a later commit', async () => {
  const from = await d.maxInboxId()
  await submitWithRetries(SELF, 'n')
  const rows = await d.readInbox(from, ['ob.x'], 100)
  assert.deepEqual(rows.map((r) => r.envelope.data), [0, 1, 4, 6, 7, 9])
})

test('events for another peer only (one statement): consecutive sequence numbers, a nonce queued once, the link told the top', async () => {
  await submitWithRetries(OTHER, 'm')
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
