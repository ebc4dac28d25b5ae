import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { connectService, type ServiceEvent } from '../../src/sdk/index.js'
import { NETNS_PORT, PeerProcess, ROOT, createTestUser, joinPeers } from '../_util/peers.js'
import { Netns, netnsUnsupported } from '../_util/netns.js'
import { waitFor } from '../_util/wait.js'

// RFC 3 "Adding New Peers", with each peer on a host of its own (a network
// namespace, HARNESS.md §2): B joins through A, C through B, D and E through
// C. Each sponsor hands the newcomer its peer table and introduces it to its
// peers, who greet it (greeting = auto) or ask their sysadmin (D: manual).
const skip = netnsUnsupported() ?? false
const peers: Record<string, PeerProcess> = {}
let user: Awaited<ReturnType<typeof createTestUser>>
let net: Netns
const names = ['a', 'b', 'c', 'd', 'e']

before(async () => {
  if (skip !== false) return
  net = await Netns.create(names)
  user = await createTestUser()
  // in parallel: key generation and the first start are most of the set-up time
  await Promise.all(names.map(async (n) => {
    const p = await PeerProcess.create({ name: `net-${n}`, netns: { net, host: n }, peerToml: `greeting = "${n === 'd' ? 'manual' : 'auto'}"\nexcommunication = "auto"` })
    peers[n] = p
    await p.start()
  }))
})

after(async () => {
  for (const p of Object.values(peers)) await p.destroy()
  await user?.remove()
  await net?.destroy()
})

const P = (n: string): PeerProcess => peers[n] as PeerProcess

async function listOn (n: string): Promise<any[]> { return await P(n).ctl('peer', 'list') }

async function openTo (from: string): Promise<string[]> {
  return (await listOn(from)).filter((p: any) => p.connection === 'open' && p.state === 'active').map((p: any) => p.uuid).sort()
}

const othersOf = (n: string, except: string[] = []): string[] => names.filter((m) => m !== n && !except.includes(m)).map((m) => P(m).uuid).sort()
const nameOf = (uuid: string): string => names.find((m) => P(m).uuid === uuid) ?? uuid

/**
 * True once `n` has an open link to each of `expected`; until then it throws
 * what is missing (waitFor puts the last one in its time-out message), so a
 * failure says which pair never met and how the link stood.
 */
async function reaches (n: string, expected: string[]): Promise<true> {
  const list = await listOn(n)
  const missing = expected.filter((u) => !list.some((p: any) => p.uuid === u && p.connection === 'open' && p.state === 'active'))
  if (missing.length === 0) return true
  const how = missing.map((u) => {
    const p = list.find((x: any) => x.uuid === u)
    return p === undefined ? `${nameOf(u)} not in its table` : `${nameOf(u)} ${p.state as string}/${p.connection as string} outbox ${p.outbox as number}`
  })
  throw new Error(`${n} lacks ${how.join('; ')}`)
}

test('introductions: every peer ends up with a session with every other (D approves E by hand)', { skip }, async () => {
  await joinPeers(P('a'), P('b'), user.name)
  await joinPeers(P('b'), P('c'), user.name)
  await joinPeers(P('c'), P('d'), user.name)
  await joinPeers(P('c'), P('e'), user.name)
  // every pair but D-E within 30 s of the last join
  for (const n of names) {
    const except = n === 'd' ? ['e'] : n === 'e' ? ['d'] : []
    await waitFor(`${n} to reach every other (but D-E)`, async () => await reaches(n, othersOf(n, except)), 30_000, 250)
  }
  // D's greeting policy is manual: E's introduction waits for D's sysadmin
  const req = await waitFor('E in D\'s requests', async () => (await P('d').ctl('peer', 'requests')).find((x: any) => x.uuid === P('e').uuid && x.state === 'pending'), 30_000)
  assert.equal(req.introducedBy, P('c').uuid)
  assert.ok(!(await openTo('d')).includes(P('e').uuid), 'D does not talk to E before approving')
  assert.ok(!(await listOn('d')).some((p: any) => p.uuid === P('e').uuid), 'nor has it in its table')
  await P('d').ctl('peer', 'approve', P('e').uuid)
  for (const n of ['d', 'e']) await waitFor(`${n} to reach all four others`, async () => await reaches(n, othersOf(n)), 30_000, 250)
  // `peer list --json` agrees everywhere: each peer knows the other four, at their namespace addresses
  for (const n of names) {
    const list = await listOn(n)
    assert.deepEqual(list.map((p: any) => p.uuid).sort(), othersOf(n))
    for (const p of list) {
      const m = names.find((x) => P(x).uuid === p.uuid) as string
      assert.equal(p.address, `${net.host(m).ip}:${NETNS_PORT}`, `${n} has ${m}'s address`)
      assert.equal(p.domain, `net-${m}.center.test`)
    }
  }
})

test('a restarted peer has its table back without re-joining', { skip }, async () => {
  await P('b').stop()
  await P('b').start()
  await waitFor('b to reconnect to all', async () => await reaches('b', othersOf('b')), 30_000, 250)
  assert.equal(P('b').logs().filter((l) => l.msg === 'join request sent').length, 1, 'B sent one join request, at the start, and none since')
})

test('C moves to another address: the others reach it there within 30 s, through its signed peer record', { skip }, async () => {
  const oldIp = net.host('c').ip
  const newIp = net.spareAddress(3)
  await P('c').stop()
  // in this order: deleting a primary address deletes the secondaries of its subnet
  await net.removeAddress('c', oldIp)
  await net.addAddress('c', newIp)
  // C cannot open connections to A: A can only learn where C went from the
  // record other peers forward to it, and must dial C itself
  await net.blockDial('c', net.host('a').ip, NETNS_PORT)
  try {
    P('c').moveTo(newIp)
    const t0 = Date.now()
    await P('c').start()
    for (const n of ['a', 'b', 'd', 'e']) {
      await waitFor(`${n} to reach C at ${newIp}`, async () => {
        const c = (await listOn(n)).find((p: any) => p.uuid === P('c').uuid)
        return c?.address === `${newIp}:${NETNS_PORT}` && c?.connection === 'open'
      }, 30_000 - (Date.now() - t0), 250)
    }
    assert.ok(Date.now() - t0 < 30_000)
    await waitFor('C to reach every other', async () => await reaches('c', othersOf('c')), 30_000, 250)
    // A took the record from another peer (C could not reach it), verified with C's key
    const applied = P('a').logs().filter((l) => l.msg === 'peer record applied' && l.peer === P('c').uuid)
    assert.equal(applied.length, 1, 'A applied C\'s new record once (forwarded copies are not newer)')
    assert.equal(applied[0]?.address, `${newIp}:${NETNS_PORT}`)
    assert.equal(applied[0]?.direct, false, 'the record reached A through another peer')
    assert.notEqual(applied[0]?.via, P('c').uuid)
    const announced = P('c').logs().filter((l) => l.msg === 'peer record announced')
    assert.equal(announced.length, 1)
    assert.equal(announced[0]?.seq, applied[0]?.seq)
  } finally {
    await net.allowDial('c')
  }
  // a restart at the same address announces nothing new
  await P('c').stop()
  await P('c').start()
  await waitFor('C back', async () => await reaches('c', othersOf('c')), 30_000, 250)
  assert.equal(P('c').logs().filter((l) => l.msg === 'peer record announced').length, 1)
})

test('a dead peer shows as unreachable; events for it queue and arrive when it returns', { skip }, async () => {
  const tx = await connectService({ socket: P('a').servicesSocket, token: (await P('a').ctl('service', 'add', 'q', '--send', 'q.item')).token })
  const token = (await P('d').ctl('service', 'add', 'q', '--receive', 'q.item')).token
  try {
    await P('d').kill()
    await waitFor('A to see D gone', async () => !(await openTo('a')).includes(P('d').uuid), 40_000, 250)
    await tx.send('q.item', { n: 1 }, { to: P('d').uuid })
    const onA = (await listOn('a')).find((p: any) => p.uuid === P('d').uuid)
    assert.equal(onA.outbox, 1, 'the event waits in A\'s outbox')
    assert.notEqual(onA.connection, 'open')
    assert.ok(onA.unreachableSince !== null, 'peer list says since when D is unreachable')
    await P('d').start()
    const got: ServiceEvent[] = []
    const rx = await connectService({ socket: P('d').servicesSocket, token })
    try {
      await rx.subscribe(['q.item'], (ev) => { got.push(ev) })
      await waitFor('the queued event on D', () => got.length === 1, 30_000)
      assert.deepEqual(got[0]?.data, { n: 1 })
    } finally {
      await rx.close()
    }
    await waitFor('D back with everyone', async () => await reaches('d', othersOf('d')), 30_000, 250)
  } finally {
    await tx.close()
  }
})

const refusalsOf = (n: string, code: string, peer?: string): Array<Record<string, any>> =>
  P(n).logs().filter((l) => l.msg === 'refused' && l.code === code && (peer === undefined || l.peer === peer))

test('ban E from A: within 10 s every auto-applying peer refuses E\'s frames', { skip }, async () => {
  const e = P('e').uuid
  const before = Object.fromEntries(names.map((n) => [n, refusalsOf(n, 'banned-peer', e).length]))
  const t0 = Date.now()
  const r = await P('a').ctl('peer', 'ban', e, '--reason', 'added malicious users')
  assert.equal(r.notified, 3, 'B, C and D are told (E is banned first)')
  // E still dials everyone (nobody told it): each refuses its first frame as
  // banned-peer. Timed by the peers' own log lines, not by our polling.
  for (const n of ['a', 'b', 'c', 'd']) {
    const first = await waitFor(`${n} to refuse E's frames`, () => refusalsOf(n, 'banned-peer', e)[before[n] as number], 10_000, 100)
    const after = new Date(first.time).getTime() - t0
    assert.ok(after < 10_000, `${n} refused E ${after} ms after the ban`)
  }
  for (const n of ['a', 'b', 'c', 'd']) assert.equal((await listOn(n)).find((p: any) => p.uuid === e)?.state, 'banned')
  const line = refusalsOf('b', 'banned-peer', e).at(-1)
  assert.match(String(line?.reason), /is banned here/)
  const bans = await P('b').ctl('peer', 'bans')
  assert.equal(bans.length, 1)
  assert.equal(bans[0].uuid, e)
  assert.equal(bans[0].bannedBy, P('a').uuid)
  assert.equal(bans[0].sponsor, P('c').uuid, 'who sponsored the banned peer is remembered')
  await waitFor('E cut off', async () => (await openTo('e')).length === 0, 20_000, 250)
})

test('a forged excommunication notice is refused and changes nothing', { skip }, async () => {
  const b = P('b')
  const listBefore = (await listOn('b')).map((p: any) => `${p.uuid}:${p.state as string}`).sort()
  const bansBefore = await b.ctl('peer', 'bans')
  const counts = { unknown: refusalsOf('b', 'unknown-peer').length, sig: refusalsOf('b', 'bad-signature').length }
  const whoami = await b.ctl('whoami')
  // from E's host (any box will do): notices banning D, from a stranger and in A's name
  const out = await net.exec('e', process.execPath, join(ROOT, 'dist/test/_util/forge-notice.js'),
    JSON.stringify({ address: b.address, to: b.uuid, toKey: whoami.publicKey, claim: P('a').uuid, ban: P('d').uuid }))
  const res = JSON.parse(out)
  assert.equal(res.stranger.code, 'unknown-peer', JSON.stringify(res.stranger))
  assert.match(res.stranger.message, /neither a peer nor one we asked to join/)
  assert.equal(res.impostorGpg.code, 'bad-signature', JSON.stringify(res.impostorGpg))
  assert.equal(res.impostorGpgPlus.closed, 4401)
  assert.equal(res.impostorGpgPlus.reason, 'BadSignatureError')
  await waitFor('B\'s refusal log lines', () => refusalsOf('b', 'unknown-peer').length === counts.unknown + 1 && refusalsOf('b', 'bad-signature').length === counts.sig + 2, 10_000)
  // nothing changed: D is still an active peer of B's, and no ban was added
  assert.deepEqual((await listOn('b')).map((p: any) => `${p.uuid}:${p.state as string}`).sort(), listBefore)
  assert.deepEqual(await b.ctl('peer', 'bans'), bansBefore)
  assert.ok((await openTo('b')).includes(P('d').uuid))
})
