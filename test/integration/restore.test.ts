import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import pg from 'pg'
import { connectService, type ServiceClient } from '../../src/sdk/index.js'
import { PeerProcess, createTestUser, joinPeers } from '../_util/peers.js'
import { ensurePostgres } from '../_util/pg.js'
import { waitFor } from '../_util/wait.js'

// B is restored from an old database backup while A kept running. A's events
// sent after the backup but before the restore are lost on B (its restore
// lost them), but nothing after: both directions flow again by themselves,
// including what B queued right after coming back, before A said hello.
let a: PeerProcess
let b: PeerProcess
let user: Awaited<ReturnType<typeof createTestUser>>
let tokens: Record<string, string>

const dbName = (p: PeerProcess): string => new URL(/url = "([^"]+)"/.exec(readFileSync(p.configPath, 'utf8'))?.[1] as string).pathname.slice(1)

async function admin (sqlText: string): Promise<void> {
  const c = new pg.Client({ connectionString: await ensurePostgres() })
  await c.connect()
  try { await c.query(sqlText) } finally { await c.end() }
}

async function pump (from: PeerProcess, token: string, name: string, to: string, lo: number, hi: number): Promise<void> {
  const tx = await connectService({ socket: from.servicesSocket, token })
  try {
    await Promise.all(Array.from({ length: hi - lo }, async (_, k) => await tx.send(name, { i: lo + k }, { to })))
  } finally {
    await tx.close()
  }
}

async function listen (p: PeerProcess, token: string, name: string): Promise<{ got: number[], c: ServiceClient }> {
  const got: number[] = []
  const c = await connectService({ socket: p.servicesSocket, token })
  await c.subscribe([name], (ev) => { got.push((ev.data as { i: number }).i) })
  return { got, c }
}

before(async () => {
  user = await createTestUser()
  a = await PeerProcess.create({ name: 'rs-a' })
  b = await PeerProcess.create({ name: 'rs-b' })
  await a.start()
  await b.start()
  await joinPeers(a, b, user.name)
  tokens = {
    aSend: (await a.ctl('service', 'add', 'r', '--send', 'r.down', '--receive', 'r.up')).token,
    bSend: (await b.ctl('service', 'add', 'r', '--send', 'r.up', '--receive', 'r.down')).token
  }
})

after(async () => {
  const snap = b === undefined ? null : `${dbName(b)}_snap`
  await a?.destroy()
  await b?.destroy()
  if (snap !== null) await admin(`DROP DATABASE IF EXISTS ${snap} WITH (FORCE)`).catch(() => {})
  await user?.remove()
})

test('after restoring an old database, B receives again and what it queued first reaches A', async () => {
  const onA = await listen(a, tokens.aSend as string, 'r.up')
  let onB = await listen(b, tokens.bSend as string, 'r.down')
  await pump(a, tokens.aSend as string, 'r.down', b.uuid, 0, 20)
  await pump(b, tokens.bSend as string, 'r.up', a.uuid, 0, 20)
  await waitFor('the first 20 each way', () => onA.got.length === 20 && onB.got.length === 20)

  // the backup
  await onB.c.close()
  await b.stop()
  await admin(`CREATE DATABASE ${dbName(b)}_snap TEMPLATE ${dbName(b)}`)
  await b.start()
  onB = await listen(b, tokens.bSend as string, 'r.down')
  await pump(a, tokens.aSend as string, 'r.down', b.uuid, 20, 50)
  await pump(b, tokens.bSend as string, 'r.up', a.uuid, 20, 50)
  await waitFor('30 more each way', () => onA.got.length === 50 && onB.got.length === 30)

  // lose everything since the backup
  await onB.c.close()
  await b.stop()
  await admin(`DROP DATABASE ${dbName(b)} WITH (FORCE)`)
  await admin(`CREATE DATABASE ${dbName(b)} TEMPLATE ${dbName(b)}_snap`)
  await b.start()
  // queued by B at once: its counter is where the backup left it
  await pump(b, tokens.bSend as string, 'r.up', a.uuid, 100, 110)
  const fresh = await listen(b, tokens.bSend as string, 'r.down')
  await pump(a, tokens.aSend as string, 'r.down', b.uuid, 200, 210)
  try {
    await waitFor('B\'s post-restore events on A', () => onA.got.filter((i) => i >= 100).length === 10, 30_000)
    await waitFor('A\'s new events on B', () => fresh.got.filter((i) => i >= 200).length === 10, 30_000)
    assert.deepEqual(onA.got.filter((i) => i >= 100), Array.from({ length: 10 }, (_, k) => 100 + k), 'each once, in order')
    assert.deepEqual(fresh.got.filter((i) => i >= 200), Array.from({ length: 10 }, (_, k) => 200 + k))
    assert.equal(onA.got.length, 60, 'nothing twice on A')
  } finally {
    await fresh.c.close()
    await onA.c.close()
  }
})
