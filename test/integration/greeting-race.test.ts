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

async function candidate (on: InProcessPeer, of: InProcessPeer, state: 'heard' | 'greeting'): Promise<void> {
  const c = cardOf(of)
  await on.daemon.ctx.database.db.insertInto('peer_candidates').values({
    uuid: c.uuid, domain: c.domain, address: c.address, public_key: c.publicArmored, fingerprint: of.daemon.ctx.identity.fingerprint,
    signal_bundle: JSON.stringify(c.bundle), introduced_by: SPONSOR, state, next_try: new Date(Date.now() + 3600_000)
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
