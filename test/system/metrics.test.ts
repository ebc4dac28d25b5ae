import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MetricsServer, type MetricsSnapshot } from '../../src/metrics/index.js'
import { contextMetricsSource } from '../../src/metrics/context.js'
import { connectService } from '../../src/sdk/index.js'
import { joinInProcess, startInProcessPeer } from '../_util/inproc.js'
import { createTestUser } from '../_util/peers.js'
import { waitFor } from '../_util/wait.js'
import { sample } from '../_util/metrics.js'

/** One sample's value from the exposition text, or undefined. */

async function scrape (url: string): Promise<string> {
  const res = await fetch(url)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
  return await res.text()
}

test('figures from the source show up on GET /metrics and follow it from scrape to scrape', async () => {
  // a stand-in for the daemon's numbers; the daemon's own source is tested below
  const snap: MetricsSnapshot = {
    peers: [{ uuid: 'p1', domain: 'a.test', state: 'active', connection: 'open', outboxDepth: 0, outboxOldestSeconds: null, lastSeenSeconds: 2 }],
    services: [{ name: 'echo', state: 'active', delivered: 5 }],
    counters: { eventsIn: 1, eventsOut: 2, framesIn: 3, framesOut: 4, duplicates: 0, expiredInOutbox: 0, refusals: { 'bad-signature': 1 } },
    inboxMaxId: 7,
    syncBacklog: [{ peer: 'p1', domain: 'a.test', trees: 3 }],
    backfill: { state: 'running', received: 500, total: 2000 }
  }
  const m = new MetricsServer({ listen: { host: '127.0.0.1', port: 0 } }, { source: { snapshot: async () => structuredClone(snap) } })
  const addr = await m.start()
  assert.deepEqual(await m.start(), addr, 'start is idempotent')
  const url = `http://127.0.0.1:${addr.port}/metrics`
  try {
    let t = await scrape(url)
    assert.equal(sample(t, 'center_events_received_total'), 1)
    assert.equal(sample(t, 'center_refusals_total', { code: 'bad-signature' }), 1)
    assert.equal(sample(t, 'center_peer_up', { peer: 'p1' }), 1)
    assert.equal(sample(t, 'center_peer_outbox_events', { peer: 'p1' }), 0)
    assert.equal(sample(t, 'center_service_queue_ids', { service: 'echo' }), 2)
    assert.equal(sample(t, 'center_inbox_max_id'), 7)
    assert.ok(sample(t, 'process_resident_memory_bytes') !== undefined, 'default process metrics are there')
    assert.equal(sample(t, 'center_sync_backlog_trees', { peer: 'p1' }), 3)
    assert.equal(sample(t, 'center_account_backfill_received'), 500)
    assert.equal(sample(t, 'center_account_backfill_total'), 2000)
    assert.equal(sample(t, 'center_account_backfill_done'), 0)

    snap.counters.eventsIn = 10
    snap.counters.refusals.expired = 3
    snap.peers[0] = { ...snap.peers[0]!, connection: 'connecting', outboxDepth: 42, outboxOldestSeconds: 30 }
    snap.services[0]!.delivered = 7
    t = await scrape(url)
    assert.equal(sample(t, 'center_events_received_total'), 10)
    assert.equal(sample(t, 'center_refusals_total', { code: 'expired' }), 3)
    assert.equal(sample(t, 'center_peer_up', { peer: 'p1' }), 0)
    assert.equal(sample(t, 'center_peer_info', { peer: 'p1', connection: 'connecting' }), 1)
    assert.equal(sample(t, 'center_peer_info', { peer: 'p1', connection: 'open' }), undefined, 'the old link state is gone')
    assert.equal(sample(t, 'center_peer_outbox_events', { peer: 'p1' }), 42)
    assert.equal(sample(t, 'center_peer_outbox_oldest_age_seconds', { peer: 'p1' }), 30)
    assert.equal(sample(t, 'center_service_queue_ids', { service: 'echo' }), 0)

    snap.syncBacklog = [{ peer: 'p1', domain: 'a.test', trees: 0 }]
    snap.backfill = { state: 'done', received: 2000, total: 2000 }
    t = await scrape(url)
    assert.equal(sample(t, 'center_sync_backlog_trees', { peer: 'p1' }), 0)
    assert.equal(sample(t, 'center_account_backfill_received'), 2000)
    assert.equal(sample(t, 'center_account_backfill_done'), 1)
    // a peer without [sync] and [ldap] has no such series at all
    snap.syncBacklog = null
    snap.backfill = null
    t = await scrape(url)
    assert.equal(sample(t, 'center_sync_backlog_trees', { peer: 'p1' }), undefined)
    assert.equal(sample(t, 'center_account_backfill_done'), undefined)

    snap.peers = []
    t = await scrape(url)
    assert.equal(sample(t, 'center_peer_up', { peer: 'p1' }), undefined, 'a removed peer has no series left')

    assert.equal((await fetch(url.replace('/metrics', '/'))).status, 404)
    assert.equal((await fetch(url, { method: 'POST' })).status, 405)
  } finally {
    await m.stop()
    await m.stop()
  }
  await assert.rejects(fetch(url), 'stopped means closed')
})

test('a failing source gives a 500, not a crash', async () => {
  const m = new MetricsServer({ listen: { host: '127.0.0.1', port: 0 }, defaultMetrics: false }, { source: { snapshot: async () => { throw new Error('database gone') } } })
  const { port } = await m.start()
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`)
    assert.equal(res.status, 500)
    assert.match(await res.text(), /database gone/)
  } finally {
    await m.stop()
  }
})

test('the daemon\'s own figures: two joined peers, events flow, counters and link state move', { timeout: 120_000 }, async () => {
  const user = await createTestUser()
  const a = await startInProcessPeer('metrics-a')
  const b = await startInProcessPeer('metrics-b')
  const ma = new MetricsServer({ listen: { host: '127.0.0.1', port: 0 }, defaultMetrics: false }, { source: contextMetricsSource(a.daemon.ctx) })
  const mb = new MetricsServer({ listen: { host: '127.0.0.1', port: 0 }, defaultMetrics: false }, { source: contextMetricsSource(b.daemon.ctx) })
  try {
    const ua = `http://127.0.0.1:${(await ma.start()).port}/metrics`
    const ub = `http://127.0.0.1:${(await mb.start()).port}/metrics`
    assert.equal(sample(await scrape(ua), 'center_peer_up'), undefined, 'no peers yet')
    await joinInProcess(a, b, user.name)
    assert.equal(sample(await scrape(ua), 'center_peer_up', { peer: b.uuid }), 1)

    const tx = await a.daemon.ctx.registry.add('probe', { receive: [], send: ['probe.ok'] })
    const rx = await b.daemon.ctx.registry.add('probe', { receive: ['probe.ok'], send: [] })
    const txc = await connectService({ socket: a.daemon.ctx.cfg.services.socket, token: tx.token })
    const rxc = await connectService({ socket: b.daemon.ctx.cfg.services.socket, token: rx.token })
    let got = 0
    await rxc.subscribe(['probe.ok'], () => { got++ })
    const inBefore = sample(await scrape(ub), 'center_events_received_total') ?? 0
    for (let i = 0; i < 5; i++) await txc.send('probe.ok', { i }, { to: b.uuid })
    await waitFor('5 events delivered', () => got === 5, 20_000)
    const tb = await scrape(ub)
    assert.ok((sample(tb, 'center_events_received_total') ?? 0) >= inBefore + 5, tb)
    assert.ok((sample(tb, 'center_inbox_max_id') ?? 0) >= 5)
    await waitFor('a to count its sent events', async () => (sample(await scrape(ua), 'center_events_sent_total') ?? 0) >= 5, 10_000)
    await waitFor('probe to acknowledge', async () => sample(await scrape(ub), 'center_service_queue_ids', { service: 'probe' }) === 0, 10_000)
    await txc.close()
    await rxc.close()

    await b.stop()
    await waitFor('a to see b go', async () => sample(await scrape(ua), 'center_peer_up', { peer: b.uuid }) === 0, 20_000)
  } finally {
    await ma.stop()
    await mb.stop()
    await a.stop()
    await b.stop().catch(() => {})
    await user.remove()
  }
})
