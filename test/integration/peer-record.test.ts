import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { generateKeyPair, readPrivateKey } from '../../src/identity/openpgp.js'
import { PEERS_SERVICE } from '../../src/peers/network.js'
import { signRecord, type SignedPeerRecord } from '../../src/peers/record.js'
import { createTestUser } from '../_util/peers.js'
import { joinInProcess, startInProcessPeer, type InProcessPeer } from '../_util/inproc.js'
import { waitFor } from '../_util/wait.js'

// Signed peer records (protocol.md 8.7) as B takes them from A. A's daemon
// never sends a forged, altered or stale record, so the test submits them
// through A's real `center-peers` service: the fault is the record's
// content, the path (outbox, link, inbox, PeerNetwork) is the real one.
let a: InProcessPeer
let b: InProcessPeer
let user: Awaited<ReturnType<typeof createTestUser>>

before(async () => {
  user = await createTestUser()
  a = await startInProcessPeer('rec-a')
  b = await startInProcessPeer('rec-b')
  await joinInProcess(a, b, user.name)
})

after(async () => {
  await a?.stop()
  await b?.stop()
  await user?.remove()
})

const addressOfAOnB = (): string | undefined => b.daemon.ctx.peers.get(a.uuid)?.address

/** A sends `record` to B as a peer-record event; resolves with B's log line about it. */
async function deliver (record: unknown): Promise<Record<string, any>> {
  const seen = b.logs.length
  await a.daemon.ctx.dispatcher.submit(PEERS_SERVICE, [{ name: 'peer-record', to: b.uuid, data: { record } }])
  return await waitFor('B to handle the record', () => b.logs.slice(seen).find((l) =>
    l.msg === 'peer event refused' || l.msg === 'peer record applied' || l.msg === 'peer record not newer; not forwarded'), 20_000)
}

function recordOfA (address: string, seq: number): Promise<SignedPeerRecord> {
  return signRecord({ uuid: a.uuid, domain: a.daemon.ctx.identity.domain, address, seq }, a.daemon.ctx.identity)
}

test('each peer made and stored its own record at start', async () => {
  const own = await a.daemon.ctx.network.records.get(a.uuid)
  assert.equal(own?.address, a.daemon.ctx.advertise())
  assert.ok((own?.seq ?? 0) > 0)
})

test('a record signed by another key is refused: bad-signature, and nothing changes', async () => {
  const before = addressOfAOnB()
  const other = await readPrivateKey((await generateKeyPair('forger.center.test')).privateArmored)
  const forged = await signRecord({ uuid: a.uuid, domain: 'rec-a.center.test', address: '127.0.0.1:9', seq: Date.now() + 1_000_000 }, { privateKey: other })
  const line = await deliver(forged)
  assert.equal(line.msg, 'peer event refused')
  assert.equal(line.code, 'bad-signature')
  assert.match(line.err, /is not signed by its key/)
  assert.equal(addressOfAOnB(), before)
})

test('a record altered after signing is refused: bad-signature', async () => {
  const before = addressOfAOnB()
  const good = await recordOfA('127.0.0.1:9', Date.now() + 2_000_000)
  const line = await deliver({ ...good, address: '127.0.0.1:10' })
  assert.equal(line.code, 'bad-signature')
  assert.equal(addressOfAOnB(), before)
})

test('a record about a peer B never admitted is refused: not-found', async () => {
  const line = await deliver({ uuid: randomUUID(), domain: 'x.center.test', address: '127.0.0.1:9', seq: 5, sig: 'AAAA' })
  assert.equal(line.code, 'not-found')
})

test('a malformed record is refused: schema', async () => {
  const line = await deliver({ uuid: a.uuid, domain: 'rec-a.center.test', address: 'no port', seq: 5, sig: 'AAAA' })
  assert.equal(line.code, 'schema')
})

test('a newer record moves the peer; an older one does not move it back', async () => {
  const real = addressOfAOnB() as string
  const base = Date.now() + 10_000_000
  const moved = await deliver(await recordOfA('127.0.0.1:9', base))
  assert.equal(moved.msg, 'peer record applied')
  assert.equal(addressOfAOnB(), '127.0.0.1:9')
  const row = await b.daemon.ctx.database.db.selectFrom('peers').select('address').where('uuid', '=', a.uuid).executeTakeFirstOrThrow()
  assert.equal(row.address, '127.0.0.1:9', 'stored in peers.address')
  const stale = await deliver(await recordOfA('127.0.0.1:11', base - 1))
  assert.equal(stale.msg, 'peer record not newer; not forwarded')
  assert.equal(addressOfAOnB(), '127.0.0.1:9')
  // and back to the real address, so the link keeps working
  await deliver(await recordOfA(real, base + 1))
  assert.equal(addressOfAOnB(), real)
  assert.equal(b.daemon.ctx.links.get(a.uuid)?.state, 'open')
})
