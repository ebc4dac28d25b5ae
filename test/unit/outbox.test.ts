import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { Database } from '../../src/db/index.js'
import { Dispatcher } from '../../src/dispatcher/index.js'
import { createTestDatabase } from '../_util/pg.js'

// The real outbox on real PostgreSQL: a send retried with the same nonce is
// queued once, whether the copies arrive in one request, in several requests
// of one group commit, or in a later commit; another service's nonce is its own.
const SELF = '00000000-0000-4000-8000-0000000000aa'
let database: Database
let drop: () => Promise<void>
let d: Dispatcher

before(async () => {
  const t = await createTestDatabase('center_outbox')
  drop = t.drop
  database = Database.open({ url: t.url, pgliteDir: '' }, { logger: pino({ level: 'silent' }) })
  await database.migrateToLatestOrThrow()
  d = new Dispatcher({ defaultTtlSeconds: 600, maxTtlSeconds: 3600, maxEventBytes: 65_536 }, {
    db: database.db, logger: pino({ level: 'silent' }), self: SELF, activePeers: () => [], isActivePeer: () => false, onQueued: () => {}
  })
  await d.load()
})

after(async () => {
  await database?.close()
  await drop?.()
})

const ev = (data: number, nonce?: string): { name: string, to: string, data: number, nonce?: string } => ({ name: 'ob.x', to: SELF, data, ...(nonce !== undefined ? { nonce } : {}) })

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
