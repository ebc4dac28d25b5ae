import { test } from 'node:test'
import assert from 'node:assert/strict'
import { checkPayload } from '../../src/transport/payload.js'

test('a GPG+ payload with events must say which range of sequence numbers it covers', () => {
  assert.deepEqual(checkPayload({ base: 4, upTo: 9, events: [{ seq: 5, env: {} }, { seq: 9, env: {} }] }).upTo, 9)
  assert.doesNotThrow(() => checkPayload({ base: 4, upTo: 9, events: [] }), 'all expired at the sender: an empty range is fine')
  assert.doesNotThrow(() => checkPayload({ hello: { ack: 3 } }))
  assert.doesNotThrow(() => checkPayload({ ack: 7, ping: 'abc' }))
  const bad: Array<[unknown, RegExp]> = [
    [{ events: [{ seq: 1, env: {} }] }, /bracket/],
    [{ base: 1, upTo: 9, events: [{ seq: 1, env: {} }] }, /bracket/],
    [{ base: 0, upTo: 1, events: [{ seq: 1, env: {} }, { seq: 2, env: {} }] }, /bracket/],
    [{ base: 0, upTo: 9, events: [{ seq: 2, env: {} }, { seq: 2, env: {} }] }, /increasing/],
    [{ base: 0, upTo: 9, events: [{ seq: 0, env: {} }] }, /positive integer/],
    [{ events: 'x' }, /must be an array/],
    [{ ack: -1 }, /non-negative/],
    [{ rewind: 1.5 }, /non-negative integer/],
    [{ hello: {} }, /hello.ack/],
    [{ ping: 'x'.repeat(65) }, /short string/],
    [[], /JSON object/]
  ]
  for (const [p, re] of bad) assert.throws(() => checkPayload(p), (err: any) => err.code === 'schema' && re.test(err.message), JSON.stringify(p))
})
