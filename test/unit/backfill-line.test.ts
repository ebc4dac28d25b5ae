import { test } from 'node:test'
import assert from 'node:assert/strict'
import { backfillLine } from '../../src/cli/backfill.js'
import { checkBackfillReport } from '../../src/accounts/events.js'

const peer = '65e256c6-771f-4ad6-84f8-1464649eaaf4'

test('centerctl status draws the backfill as a bar: empty, half, full, and never past full', () => {
  assert.equal(backfillLine({ state: 'running', peer, received: 0, total: 2000 }), `accounts backfill [${'-'.repeat(30)}] 0/2000 from ${peer} (joining)`)
  assert.equal(backfillLine({ state: 'running', peer, received: 1000, total: 2000 }), `accounts backfill [${'#'.repeat(15)}${'-'.repeat(15)}] 1000/2000 from ${peer} (joining)`)
  // a page counted twice after a crash must not draw more than the bar
  assert.match(backfillLine({ state: 'running', peer, received: 2100, total: 2000 }), /\[#{30}\] 2100\/2000/)
  assert.match(backfillLine({ state: 'running', peer: null, received: 0, total: 0 }), /\[-{30}\] 0\/0 from -/)
  assert.equal(backfillLine({ state: 'done', peer, received: 2000, total: 2000 }), `accounts backfill done: 2000 accounts from ${peer}`)
  assert.match(backfillLine({ state: 'waiting', peer: null, received: 0, total: 0 }), /waiting: no active peer/)
})

test('a peer\'s backfill report is checked field by field', () => {
  assert.deepEqual(checkBackfillReport({ state: 'done', received: 5, total: 5, at: 1 }), { state: 'done', received: 5, total: 5, at: 1 })
  assert.throws(() => checkBackfillReport({ state: 'joined', received: 5, total: 5, at: 1 }), /state must be "running" or "done"/)
  assert.throws(() => checkBackfillReport({ state: 'running', received: -1, total: 5, at: 1 }), /received must be a non-negative integer/)
  assert.throws(() => checkBackfillReport({ state: 'running', received: 1, total: 2 ** 40, at: 1 }), /total must be a non-negative integer/)
  assert.throws(() => checkBackfillReport({ state: 'running', received: 1, total: 2, at: 'now' }), /at must be a positive integer/)
  assert.throws(() => checkBackfillReport('done'), /must be an object/)
})
