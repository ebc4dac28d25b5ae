import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  compareDistance, createPeerTable, filePeerTableStore, FingerprintMismatchError, memoryPeerTableStore,
  nodeIdOf, SnapshotError, type PeerContact
} from '../../src/peer-table/index.js'
import { testUuid, wireOf } from './_testnet.js'

const SELF = testUuid(0, 'self')

test('node id is SHA-256 of the lowercase uuid, truncated to 20 bytes', () => {
  const id = nodeIdOf(SELF.toUpperCase())
  assert.equal(id.length, 20)
  assert.deepEqual(id, nodeIdOf(SELF))
  const digest = createHash('sha256').update(SELF.toLowerCase(), 'utf8').digest()
  assert.deepEqual(id, Uint8Array.from(digest.subarray(0, 20)))
})

test('admits, gets, lists and removes contacts; never itself', () => {
  const table = createPeerTable({}, { self: { uuid: SELF }, now: () => 1000 })
  const added: string[] = []
  const removed: string[] = []
  table.on('peer:add', c => added.push(c.uuid))
  table.on('peer:remove', c => removed.push(c.uuid))
  for (let i = 1; i <= 5; i++) assert.equal(table.add(wireOf(testUuid(i))), 'added')
  assert.equal(table.add(wireOf(SELF)), 'self')
  assert.equal(table.size, 5)
  const got = table.get(testUuid(3)) as PeerContact
  assert.equal(got.uuid, testUuid(3))
  assert.deepEqual(got.id, nodeIdOf(testUuid(3)))
  assert.equal(got.lastSeen, 1000)
  assert.equal(table.all().length, 5)
  assert.equal(table.remove(testUuid(3)), true)
  assert.equal(table.remove(testUuid(3)), false)
  assert.equal(table.get(testUuid(3)), undefined)
  assert.deepEqual(added, [1, 2, 3, 4, 5].map(i => testUuid(i)))
  assert.deepEqual(removed, [testUuid(3)])
})

test('re-adding a known peer never changes its addresses; a new fingerprint is refused', () => {
  const table = createPeerTable({}, { self: { uuid: SELF } })
  const peer = wireOf(testUuid(1))
  table.add(peer)
  assert.equal(table.add({ ...peer, addresses: ['wss://evil.example'] }), 'updated')
  assert.deepEqual(table.get(peer.uuid)?.addresses, peer.addresses)
  assert.throws(() => table.add({ ...peer, fingerprint: 'other' }), (err: Error) => {
    assert.ok(err instanceof FingerprintMismatchError)
    assert.equal(err.name, 'FingerprintMismatchError')
    return true
  })
})

test('closest() returns the n nearest contacts by XOR, nearest first', () => {
  const table = createPeerTable({}, { self: { uuid: SELF } })
  for (let i = 1; i <= 60; i++) table.add(wireOf(testUuid(i)))
  const target = nodeIdOf(testUuid(999))
  const brute = table.all().sort((a, b) => compareDistance(target, a.id, b.id)).slice(0, 8).map(c => c.uuid)
  assert.deepEqual(table.closest(target, 8).map(c => c.uuid), brute)
})

test('toJSON/restore round-trips contacts and recency order', () => {
  let now = 0
  const table = createPeerTable({}, { self: { uuid: SELF }, now: () => ++now })
  for (let i = 1; i <= 30; i++) table.add(wireOf(testUuid(i)))
  table.touch(testUuid(1))
  const snap = JSON.parse(JSON.stringify(table.toJSON()))
  assert.equal(snap.contacts.at(-1).uuid, testUuid(1))
  const copy = createPeerTable({}, { self: { uuid: SELF } })
  copy.restore(snap)
  assert.equal(copy.size, table.size)
  assert.deepEqual(copy.toJSON(), table.toJSON())
  assert.throws(() => createPeerTable({}, { self: { uuid: testUuid(2) } }).restore(snap), SnapshotError)
  assert.throws(() => copy.restore({ version: 9, self: SELF, contacts: [] }), SnapshotError)
})

test('start() loads and stop() saves through the store; both are idempotent', async () => {
  const store = memoryPeerTableStore()
  const a = createPeerTable({}, { self: { uuid: SELF }, store })
  await a.start()
  await a.start()
  for (let i = 1; i <= 10; i++) a.add(wireOf(testUuid(i)))
  await a.stop()
  await a.stop()
  assert.equal(store.snapshot?.contacts.length, 10)
  const b = createPeerTable({}, { self: { uuid: SELF }, store })
  await b.start()
  assert.equal(b.size, 10)
  assert.deepEqual(b.get(testUuid(4))?.addresses, wireOf(testUuid(4)).addresses)
  await b.stop()
})

test('the file store writes a 0600 JSON file and restores from it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peer-table-'))
  try {
    const path = join(dir, 'sub', 'peers.json')
    const store = filePeerTableStore(path)
    assert.equal(await store.load(), undefined)
    const a = createPeerTable({}, { self: { uuid: SELF }, store })
    await a.start()
    a.add(wireOf(testUuid(7)))
    await a.stop()
    assert.equal((await stat(path)).mode & 0o777, 0o600)
    assert.equal(JSON.parse(await readFile(path, 'utf8')).contacts[0].uuid, testUuid(7))
    const b = createPeerTable({}, { self: { uuid: SELF }, store })
    await b.start()
    assert.equal(b.get(testUuid(7))?.uuid, testUuid(7))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
