import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PassThrough } from 'node:stream'
import type { Socket } from 'node:net'
import { onLines } from '../../src/rpc/ndjson.js'

function fakeSocket (): Socket & PassThrough {
  const s = new PassThrough() as unknown as Socket & PassThrough
  ;(s as any).destroy = () => { (s as any).destroyed = true; return s }
  return s
}

test('lines are split across chunks and parsed; bad JSON is reported and the rest goes on', () => {
  const s = fakeSocket()
  const got: unknown[] = []
  const bad: Error[] = []
  onLines(s, 1024, (m) => got.push(m), (e) => bad.push(e))
  s.emit('data', Buffer.from('{"a":1}\n{"b"'))
  s.emit('data', Buffer.from(':2}\nnot json\n\n{"c":"ü"}\n'))
  assert.deepEqual(got, [{ a: 1 }, { b: 2 }, { c: 'ü' }])
  assert.equal(bad.length, 1)
})

test('a line over the limit is refused even when it arrives whole, counted in bytes', () => {
  for (const chunk of [Buffer.from(`{"x":"${'é'.repeat(40)}"}\n`), Buffer.from(`{"x":"${'a'.repeat(200)}"`)]) {
    const s = fakeSocket()
    const got: unknown[] = []
    const bad: Error[] = []
    onLines(s, 64, (m) => got.push(m), (e) => bad.push(e))
    s.emit('data', chunk)
    assert.deepEqual(got, [])
    assert.equal((bad[0] as any)?.code, 'frame-too-large')
    assert.equal((s as any).destroyed, true)
  }
})
