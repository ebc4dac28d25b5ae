import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { pino } from 'pino'
import { Database } from '../../src/db/index.js'
import { accountsDb } from '../../src/accounts/store.js'
import { PeerBackfillReports } from '../../src/accounts/peer-backfill.js'
import { createTestDatabase } from '../_util/pg.js'

// What a peer shows of another's backfill ("joining" until done), against real
// PostgreSQL: reports may arrive late and out of order (at-least-once delivery).
const D = '00000000-0000-4000-8000-00000000000d'
const E = '00000000-0000-4000-8000-00000000000e'
let database: Database
let drop: () => Promise<void>
let reports: PeerBackfillReports

before(async () => {
  const pgdb = await createTestDatabase('center_peerbf')
  drop = pgdb.drop
  database = Database.open({ url: pgdb.url, pgliteDir: '' }, { logger: pino({ level: 'silent' }) })
  await database.migrateToLatestOrThrow()
  reports = new PeerBackfillReports(accountsDb(database.db))
})
after(async () => { await database?.close(); await drop?.() })

test('a joining peer is "joining" until its done report, which no late progress report undoes', async () => {
  assert.equal((await reports.all()).get(D), undefined, 'a peer that never said anything: unknown')
  await reports.asked(D, 2000)
  assert.deepEqual((await reports.all()).get(D), { state: 'joining', received: 0, total: 2000 }, 'asking for pages makes it joining')
  await reports.record(D, { state: 'running', received: 900, total: 2000, at: 2000 })
  await reports.record(D, { state: 'running', received: 400, total: 2000, at: 1000 })
  assert.deepEqual((await reports.all()).get(D), { state: 'joining', received: 900, total: 2000 }, 'an older progress report is ignored')
  await reports.asked(D, 2000)
  assert.equal((await reports.all()).get(D)?.received, 900, 'another request does not reset what it said')
  // its clock went back: done still counts
  await reports.record(D, { state: 'done', received: 2000, total: 2000, at: 500 })
  await reports.record(D, { state: 'running', received: 1000, total: 2000, at: 9000 })
  assert.deepEqual((await reports.all()).get(D), { state: 'joined', received: 2000, total: 2000 })
  await reports.record(E, { state: 'done', received: 0, total: 0, at: 1 })
  assert.equal((await reports.all()).get(E)?.state, 'joined', 'a founding peer with nothing to copy')
})
