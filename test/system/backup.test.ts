import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { Daemon } from '../../src/daemon.js'
import { loadConfig } from '../../src/config/index.js'
import { createRootLogger } from '../../src/logger.js'
import { connectService, type ServiceClient } from '../../src/sdk/index.js'
import { joinInProcess, startInProcessPeer } from '../_util/inproc.js'
import { createTestUser } from '../_util/peers.js'
import { waitFor } from '../_util/wait.js'
import { ctl } from './_run.js'

const quiet = (): ReturnType<typeof createRootLogger> => createRootLogger({ level: 'silent' })

interface Scenario { trafficAfterBackup: boolean }

/**
 * Two joined peers; A is backed up while running, then dies (database
 * emptied, keys and config gone) and is restored while stopped. With
 * trafficAfterBackup, A's ratchet moves on after the backup, so the restored
 * sessions are stale rather than lost.
 */
async function restoreScenario (s: Scenario): Promise<void> {
  const user = await createTestUser()
  const a = await startInProcessPeer('backup-a')
  const b = await startInProcessPeer('backup-b')
  const work = mkdtempSync(join(tmpdir(), 'center-backup-test-'))
  const file = join(work, 'a.tar.gz')
  const cfgPath = join(a.dir, 'center.toml')
  const clients: ServiceClient[] = []
  let again: Daemon | null = null
  try {
    await joinInProcess(a, b, user.name)
    const tx = await a.daemon.ctx.registry.add('probe', { receive: [], send: ['probe.n'] })
    const rx = await b.daemon.ctx.registry.add('probe', { receive: ['probe.n'], send: [] })
    const got: number[] = []
    const rxc = await connectService({ socket: b.daemon.ctx.cfg.services.socket, token: rx.token })
    clients.push(rxc)
    await rxc.subscribe(['probe.n'], (ev) => { got.push((ev.data as { i: number }).i) })
    const r = await ctl(['--json', '--config', cfgPath, 'backup', file])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(statSync(file).mode & 0o777, 0o600, 'the archive holds private keys')
    assert.equal(JSON.parse(r.stdout).uuid, a.uuid)

    const refused = await ctl(['--config', cfgPath, 'restore', file])
    assert.notEqual(refused.code, 0)
    assert.match(refused.stderr, /centerd is running: stop it first/)

    let sent = 0
    if (s.trafficAfterBackup) {
      const before = await connectService({ socket: a.daemon.ctx.cfg.services.socket, token: tx.token })
      clients.push(before)
      for (; sent < 3; sent++) await before.send('probe.n', { i: sent }, { to: b.uuid })
      await waitFor('3 events before the crash', () => got.length === 3, 30_000)
    }

    await a.daemon.destroy()
    const cfgText = readFileSync(cfgPath, 'utf8')
    const url = loadConfig({ configPath: cfgPath }).database.url as string
    const c = new pg.Client({ connectionString: url })
    await c.connect()
    await c.query('drop schema public cascade; create schema public')
    await c.end()
    rmSync(join(a.dir, 'identity'), { recursive: true })
    rmSync(cfgPath)

    const restored = await ctl(['--json', '--config', cfgPath, 'restore', file])
    assert.equal(restored.code, 0, restored.stderr)
    assert.equal(readFileSync(cfgPath, 'utf8'), cfgText)

    again = await Daemon.create(loadConfig({ configPath: cfgPath }), { logger: quiet() })
    await again.start()
    assert.equal(again.ctx.identity.uuid, a.uuid)
    assert.ok(again.ctx.peers.list().some((p) => p.uuid === b.uuid), 'the peer table came back')
    await waitFor('the link to b to reopen', () => again?.ctx.links.get(b.uuid)?.state === 'open', 30_000)

    // the service's token is in the restored database
    const txc = await connectService({ socket: again.ctx.cfg.services.socket, token: tx.token })
    clients.push(txc)
    for (let i = sent; i < sent + 3; i++) await txc.send('probe.n', { i }, { to: b.uuid })
    await waitFor(`${sent + 3} events in all`, () => got.length === sent + 3, 20_000).catch((err) => {
      throw new Error(`${(err as Error).message}; b counted ${JSON.stringify(b.daemon.ctx.stats.snapshot())}`)
    })
    assert.deepEqual(got, Array.from({ length: sent + 3 }, (_, i) => i))
  } finally {
    for (const cl of clients) await cl.close().catch(() => {})
    await again?.destroy()
    await a.stop()
    await b.stop()
    await user.remove()
    rmSync(work, { recursive: true, force: true })
  }
}

test('PostgreSQL peer: backup while running, lose everything, restore while stopped; same UUID, link comes back, events flow', { timeout: 120_000 }, async () => {
  await restoreScenario({ trafficAfterBackup: false })
})

// A stale session (not a lost one): the restored sender reuses ratchet
// counters the receiver already consumed; the first frame of the connection
// fails (replay or decrypt) and the two re-key by themselves.
test('PostgreSQL peer restored from a backup older than its last traffic re-keys by itself', { timeout: 120_000 }, async () => {
  await restoreScenario({ trafficAfterBackup: true })
})

test('embedded PGlite peer: backup refused while running, taken when stopped, restored byte for byte', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'center-pglite-backup-'))
  const cfgPath = join(dir, 'center.toml')
  const file = join(dir, 'backup.tar.gz')
  writeFileSync(cfgPath, '[peer]\ndomain = "lite.test"\nadmin = "root"\nlisten = "127.0.0.1:0"\n')
  try {
    const d = await Daemon.create(loadConfig({ configPath: cfgPath }), { logger: quiet() })
    await d.start()
    const uuid = d.ctx.identity.uuid
    await d.ctx.registry.add('kept', { receive: ['kept.x'], send: [] })
    const running = await ctl(['--config', cfgPath, 'backup', file])
    assert.notEqual(running.code, 0)
    assert.match(running.stderr, /cannot be copied while centerd runs/)
    await d.destroy()

    const r = await ctl(['--config', cfgPath, 'backup', file])
    assert.equal(r.code, 0, r.stderr)
    const key = readFileSync(join(dir, 'identity/openpgp.key'))
    rmSync(join(dir, 'identity'), { recursive: true })
    rmSync(join(dir, 'pgdata'), { recursive: true })

    const restored = await ctl(['--config', cfgPath, 'restore', file])
    assert.equal(restored.code, 0, restored.stderr)
    assert.deepEqual(readFileSync(join(dir, 'identity/openpgp.key')), key)
    assert.equal(statSync(join(dir, 'identity/openpgp.key')).mode & 0o777, 0o600)
    assert.ok(existsSync(join(dir, 'pgdata/PG_VERSION')))

    const d2 = await Daemon.create(loadConfig({ configPath: cfgPath }), { logger: quiet() })
    await d2.start()
    try {
      assert.equal(d2.ctx.identity.uuid, uuid)
      assert.ok((await d2.ctx.registry.list()).some((s) => s.name === 'kept'), 'the database came back')
    } finally {
      await d2.destroy()
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
