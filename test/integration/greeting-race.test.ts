import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { bundleOf } from '../../src/crypto/bundle.js'
import { startInProcessPeer, type InProcessPeer } from '../_util/inproc.js'
import { waitFor } from '../_util/wait.js'

// Two sponsors can introduce a pair to each other at the same time: X greets Y
// (introduced by one sponsor) before Y has heard of X, and Y greets X
// (introduced by the other). Whatever the order, both must end up linked, and a
// greeting that was not taken must leave nothing behind.
let x: InProcessPeer
let y: InProcessPeer
const SPONSOR = '00000000-0000-4000-8000-000000000001'

before(async () => {
  x = await startInProcessPeer('race-x')
  y = await startInProcessPeer('race-y')
})

after(async () => {
  await x?.stop()
  await y?.stop()
})

function cardOf (p: InProcessPeer): Parameters<InProcessPeer['daemon']['ctx']['join']['greet']>[0] {
  const ctx = p.daemon.ctx
  return { uuid: p.uuid, domain: ctx.identity.domain, address: ctx.advertise(), publicArmored: ctx.identity.publicArmored, bundle: bundleOf(ctx.identity.signal), sponsor: SPONSOR }
}

async function candidate (on: InProcessPeer, of: InProcessPeer, state: 'heard' | 'greeting', nextTry = new Date(Date.now() + 3600_000)): Promise<void> {
  const c = cardOf(of)
  await on.daemon.ctx.database.db.insertInto('peer_candidates').values({
    uuid: c.uuid, domain: c.domain, address: c.address, public_key: c.publicArmored, fingerprint: of.daemon.ctx.identity.fingerprint,
    signal_bundle: JSON.stringify(c.bundle), introduced_by: SPONSOR, state, next_try: nextTry
  }).execute()
}

test('a greeting the newcomer refuses leaves no peer behind', async () => {
  await assert.rejects(x.daemon.ctx.join.greet(cardOf(y)), /neither a peer nor one we asked to join/)
  assert.equal(x.daemon.ctx.peers.get(y.uuid), undefined, 'Y is not in X\'s peer list')
  const rows = await x.daemon.ctx.database.db.selectFrom('peers').select('uuid').where('uuid', '=', y.uuid).execute()
  assert.equal(rows.length, 0, 'nor in its peers table')
})

test('the other side\'s greeting is taken while ours is still being retried, and the link opens', async () => {
  // X is still greeting Y (its candidate), Y heard of X from its own sponsor and greets it
  await candidate(x, y, 'greeting')
  await candidate(y, x, 'heard')
  await y.daemon.ctx.join.greet(cardOf(x))
  await waitFor('the link to open both ways', () =>
    x.daemon.ctx.links.get(y.uuid)?.state === 'open' && y.daemon.ctx.links.get(x.uuid)?.state === 'open', 20_000)
  const cand = await x.daemon.ctx.database.db.selectFrom('peer_candidates').select('state').where('uuid', '=', y.uuid).executeTakeFirstOrThrow()
  assert.equal(cand.state, 'greeted', 'X stops greeting Y')
})

test('greeting passes run one at a time: three at once greet a due candidate once, and it stays a peer', async () => {
  // the timer and each introduction start a pass; run at once, each used to
  // greet the same candidate, and a refused one's clean-up could forget the
  // peer another had just been accepted by (CI: A never had D in its table)
  const a = await startInProcessPeer('race-a')
  const b = await startInProcessPeer('race-b')
  try {
    await candidate(a, b, 'greeting', new Date(0))
    await candidate(b, a, 'heard')
    await Promise.all([a.daemon.ctx.network.greetDue(), a.daemon.ctx.network.greetDue(), a.daemon.ctx.network.greetDue()])
    const nonces = await b.daemon.ctx.database.db.selectFrom('seen_nonces').select('nonce').execute()
    assert.equal(nonces.length, 1, 'B received one add-peer-server, not one per pass')
    assert.ok(a.daemon.ctx.peers.active(b.uuid) !== undefined, 'B is in A\'s peer list')
    await waitFor('the link to open', () => a.daemon.ctx.links.get(b.uuid)?.state === 'open', 20_000)
  } finally {
    await a.stop()
    await b.stop()
  }
})
