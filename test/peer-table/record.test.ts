import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import {
  createEd25519Signer, createPeerTable, MalformedRecordError, RecordSignatureError, RecordUuidMismatchError,
  signPeerRecord, StaleRecordError, UnknownContactError, type PeerTable, type RecordSigner, type SignedPeerRecord
} from '../../src/peer-table/index.js'
import { createTestnet, testUuid, wireOf } from './_testnet.js'

const SELF = testUuid(0, 'self')
const PEER = testUuid(1)
const OTHER = testUuid(2)

const keys = new Map<string, { publicKey: KeyObject, privateKey: KeyObject }>()
function keyOf (uuid: string): { publicKey: KeyObject, privateKey: KeyObject } {
  let k = keys.get(uuid)
  if (k === undefined) { k = generateKeyPairSync('ed25519'); keys.set(uuid, k) }
  return k
}
const publicKeyOf = (uuid: string): KeyObject | undefined => keys.get(uuid)?.publicKey
const signerFor = (uuid: string): RecordSigner => createEd25519Signer({ privateKey: keyOf(uuid).privateKey, publicKeyOf })
const verifier = createEd25519Signer({ publicKeyOf })

async function record (uuid: string, seq: number, addresses: string[], by: string = uuid): Promise<SignedPeerRecord> {
  return await signPeerRecord(signerFor(by), { uuid, addresses, seq, iat: 1_700_000_000_000 + seq })
}

function tableWithPeer (): PeerTable {
  keyOf(PEER); keyOf(OTHER)
  const table = createPeerTable({}, { self: { uuid: SELF }, verifier })
  table.add(wireOf(PEER))
  table.add(wireOf(OTHER))
  return table
}

async function refused (p: Promise<unknown>, cls: new (...a: any[]) => Error, name: string): Promise<void> {
  await assert.rejects(p, (err: Error) => {
    assert.ok(err instanceof cls, `expected ${name}, got ${err.name}`)
    assert.equal(err.name, name)
    return true
  })
}

test('a validly signed record with a higher seq replaces the addresses', async () => {
  const table = tableWithPeer()
  const updates: string[][] = []
  table.on('peer:update', c => updates.push(c.addresses))
  await table.applyRecord(PEER, await record(PEER, 1, ['wss://new.example:7777']))
  assert.deepEqual(table.get(PEER)?.addresses, ['wss://new.example:7777'])
  await table.applyRecord(PEER, await record(PEER, 5, ['wss://newer.example:7777', 'wss://[2001:db8::1]:7777']))
  assert.deepEqual(table.get(PEER)?.addresses, ['wss://newer.example:7777', 'wss://[2001:db8::1]:7777'])
  assert.equal(table.get(PEER)?.record?.seq, 5)
  assert.equal(updates.length, 2)
})

test('a record with an equal or lower seq is refused with StaleRecordError', async () => {
  const table = tableWithPeer()
  await table.applyRecord(PEER, await record(PEER, 3, ['wss://a.example']))
  await refused(table.applyRecord(PEER, await record(PEER, 3, ['wss://b.example'])), StaleRecordError, 'StaleRecordError')
  await refused(table.applyRecord(PEER, await record(PEER, 2, ['wss://b.example'])), StaleRecordError, 'StaleRecordError')
  assert.deepEqual(table.get(PEER)?.addresses, ['wss://a.example'])
})

test('a bad signature is refused with RecordSignatureError', async () => {
  const table = tableWithPeer()
  const before = table.get(PEER)?.addresses
  // signed by another peer's key
  await refused(table.applyRecord(PEER, await record(PEER, 1, ['wss://evil.example'], OTHER)), RecordSignatureError, 'RecordSignatureError')
  // signed correctly, then altered
  const good = await record(PEER, 2, ['wss://good.example'])
  await refused(table.applyRecord(PEER, { ...good, addresses: ['wss://evil.example'] }), RecordSignatureError, 'RecordSignatureError')
  await refused(table.applyRecord(PEER, { ...good, seq: 99 }), RecordSignatureError, 'RecordSignatureError')
  await refused(table.applyRecord(PEER, { ...good, signature: 'AAAA' }), RecordSignatureError, 'RecordSignatureError')
  assert.deepEqual(table.get(PEER)?.addresses, before)
  // a table without a verifier trusts nothing
  const blind = createPeerTable({}, { self: { uuid: SELF } })
  blind.add(wireOf(PEER))
  await refused(blind.applyRecord(PEER, good), RecordSignatureError, 'RecordSignatureError')
})

test('a record for another uuid is refused with RecordUuidMismatchError', async () => {
  const table = tableWithPeer()
  const before = table.get(PEER)?.addresses
  await refused(table.applyRecord(PEER, await record(OTHER, 9, ['wss://other.example'])), RecordUuidMismatchError, 'RecordUuidMismatchError')
  assert.deepEqual(table.get(PEER)?.addresses, before)
})

test('malformed records and records for unknown peers are refused with typed errors', async () => {
  const table = tableWithPeer()
  const good = await record(PEER, 1, ['wss://a.example'])
  await refused(table.applyRecord(PEER, { ...good, seq: -1 }), MalformedRecordError, 'MalformedRecordError')
  await refused(table.applyRecord(PEER, { ...good, addresses: 'wss://a' }), MalformedRecordError, 'MalformedRecordError')
  await refused(table.applyRecord(PEER, { ...good, addresses: Array(17).fill('wss://a') }), MalformedRecordError, 'MalformedRecordError')
  await refused(table.applyRecord(PEER, null), MalformedRecordError, 'MalformedRecordError')
  await refused(table.applyRecord(testUuid(77), await record(testUuid(77), 1, ['wss://x'])), UnknownContactError, 'UnknownContactError')
})

test('records survive a save and restore', async () => {
  const table = tableWithPeer()
  await table.applyRecord(PEER, await record(PEER, 4, ['wss://kept.example']))
  const copy = createPeerTable({}, { self: { uuid: SELF }, verifier })
  copy.restore(JSON.parse(JSON.stringify(table.toJSON())))
  assert.equal(copy.get(PEER)?.record?.seq, 4)
  assert.deepEqual(copy.get(PEER)?.addresses, ['wss://kept.example'])
  await refused(copy.applyRecord(PEER, await record(PEER, 4, ['wss://x'])), StaleRecordError, 'StaleRecordError')
})

test('findPeer fetches a peer\'s own signed record across the network and applies it', async () => {
  const tn = await createTestnet({ size: 60, verifier })
  try {
    const target = tn.peers[41]!
    keyOf(target.uuid)
    const rec = await record(target.uuid, 7, ['wss://moved.example:7777'])
    target.kad.setLocalRecord(rec)
    const asker = tn.peers.find(p => p !== target && p.table.get(target.uuid) !== undefined)!
    const res = await asker.kad.findPeer(target.uuid)
    assert.deepEqual(res.record, rec)
    assert.ok(res.hops >= 1)
    assert.deepEqual(asker.table.get(target.uuid)?.addresses, ['wss://moved.example:7777'])
    // a forged record served by the target is ignored, not applied
    target.kad.setLocalRecord({ ...rec, seq: 8, addresses: ['wss://evil.example'] })
    const again = await asker.kad.findPeer(target.uuid)
    assert.equal(again.record, undefined)
    assert.deepEqual(asker.table.get(target.uuid)?.addresses, ['wss://moved.example:7777'])
  } finally {
    await tn.stop()
  }
})
