import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { decodeFrame, encodeErr, encodeGpg, encodeGpgPlus, encodeNew, encodeOk, gpgPlusSigned, NEW_PREFIX } from '../../src/wire/frame.js'
import { checkEnvelope, checkShape, isEventName } from '../../src/wire/envelope.js'

const A = randomUUID()
const B = randomUUID()

test('GPG+ frames round-trip, and the signed bytes are the frame without its signature block', () => {
  const header = { v: 1 as const, from: A, to: B, type: 2 as const, iat: 1700000000 }
  const ct = Buffer.from('ciphertext bytes')
  const signed = gpgPlusSigned(header, ct)
  const sig = Buffer.from('signature bytes')
  const f = decodeFrame(encodeGpgPlus(signed, sig))
  assert.equal(f.kind, 'gpg+')
  if (f.kind !== 'gpg+') return
  assert.deepEqual(f.header, header)
  assert.deepEqual(Buffer.from(f.ciphertext), ct)
  assert.deepEqual(Buffer.from(f.signature), sig)
  assert.deepEqual(Buffer.from(f.signed), signed)
})

test('NEW, GPG, OK and ERR frames round-trip', () => {
  const env = { name: 'new-peer-server', meta: { from: A, to: B, iat: 1, exp: 2 }, data: {} }
  const n = encodeNew(env)
  assert.equal(n.subarray(0, 67).toString(), NEW_PREFIX)
  assert.deepEqual(decodeFrame(n), { kind: 'new', envelope: env })
  const g = decodeFrame(encodeGpg({ v: 1, from: A, to: B }, Buffer.from([1, 2, 3])))
  assert.equal(g.kind, 'gpg')
  assert.deepEqual(decodeFrame(encodeOk({ state: 'pending' })), { kind: 'ok', body: { state: 'pending' } })
  assert.deepEqual(decodeFrame(encodeErr('bad-secret', 'nope')), { kind: 'err', body: { code: 'bad-secret', message: 'nope' } })
})

test('malformed frames are refused with typed errors', () => {
  const bad: Array<[Buffer, string]> = [
    [Buffer.from('HELLO'), 'malformed-frame'],
    [Buffer.from('NEW000'), 'malformed-frame'],
    [Buffer.from('GPG+\x00\x00'), 'malformed-frame'],
    [Buffer.concat([Buffer.from('GPG+'), Buffer.from([0, 0, 0, 200]), Buffer.from('{}')]), 'malformed-frame'],
    [Buffer.concat([Buffer.from('GPG'), Buffer.from([0, 0, 0, 2]), Buffer.from('{]')]), 'invalid-json'],
    [Buffer.concat([Buffer.from('GPG'), Buffer.from([0, 0, 0, 2]), Buffer.from('{}')]), 'schema'],
    [encodeGpg({ v: 1, from: 'not-a-uuid', to: B }, Buffer.alloc(1)), 'schema'],
    [Buffer.from(NEW_PREFIX + '{oops'), 'invalid-json']
  ]
  for (const [buf, code] of bad) assert.throws(() => decodeFrame(buf), (err: any) => err.code === code, buf.toString('latin1').slice(0, 20))
  const header = Buffer.from(JSON.stringify({ v: 1, from: A, to: B, type: 9, iat: 1 }))
  const len = Buffer.alloc(4)
  len.writeUInt32BE(header.length)
  assert.throws(() => decodeFrame(Buffer.concat([Buffer.from('GPG+'), len, header, Buffer.alloc(10)])), (err: any) => err.code === 'schema')
})

test('event names are kebab-case, optionally prefixed by a service name', () => {
  for (const ok of ['new-peer-server', 'hashtags.publish', 'a', 'board.new-post2']) assert.ok(isEventName(ok), ok)
  for (const no of ['NewPeer', 'a..b', '-x', 'x-', 'a b', 'a.b.c', '', 'x'.repeat(65), 'a.B']) assert.ok(!isEventName(no), no)
})

test('envelope checks: sender, recipient, freshness, lifetime', () => {
  const now = 1_800_000_000
  const lim = { clockSkewSeconds: 60, maxTtlSeconds: 3600 }
  const ctx = { sender: A, self: B, now }
  const env = (meta: object): unknown => ({ name: 'x.y', meta: { from: A, to: B, iat: now, exp: now + 60, ...meta }, data: null })
  assert.doesNotThrow(() => checkEnvelope(env({}), ctx, lim))
  assert.doesNotThrow(() => checkEnvelope(env({ to: '*' }), ctx, lim))
  assert.doesNotThrow(() => checkEnvelope(env({ iat: now + 59 }), ctx, lim), 'within the skew')
  const refused: Array<[object, string]> = [
    [{ from: B }, 'wrong-sender'],
    [{ to: A }, 'wrong-recipient'],
    [{ exp: now }, 'expired'],
    [{ iat: now + 61, exp: now + 120 }, 'from-the-future'],
    [{ iat: now, exp: now + 3601 }, 'ttl-too-long'],
    [{ iat: '1' }, 'schema']
  ]
  for (const [meta, code] of refused) assert.throws(() => checkEnvelope(env(meta), ctx, lim), (err: any) => err.code === code, code)
  assert.throws(() => checkShape({ name: 'x', meta: { from: A, to: B, iat: 1, exp: 2 }, data: 1, extra: 1 }), /unknown field/)
  assert.throws(() => checkShape({ name: 'x', meta: { from: A, to: B, iat: 1, exp: 2 } }), /data is missing/)
  assert.throws(() => checkShape([]), /must be a JSON object/)
})
