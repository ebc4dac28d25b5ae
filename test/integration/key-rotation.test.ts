import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { appendFileSync, existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import WebSocket from 'ws'
import { connectService, type ServiceClient } from '../../src/sdk/index.js'
import { generateKeyPair, readPrivateKey, signDetached, type PrivateKey } from '../../src/identity/openpgp.js'
import { encodeGpgPlus, gpgPlusSigned } from '../../src/wire/frame.js'
import { PeerProcess, createTestUser, joinPeers } from '../_util/peers.js'
import { sleep, waitFor } from '../_util/wait.js'

// `centerctl key rotate` between two real centerd processes. The grace period
// for the old key is limits.max_ttl_seconds, set short here (40 s) so the test
// can see it end.
const GRACE = 40
const LIMITS = `[limits]\nmax_ttl_seconds = ${GRACE}\ndefault_ttl_seconds = ${GRACE}\n`

let a: PeerProcess
let b: PeerProcess
let user: Awaited<ReturnType<typeof createTestUser>>
let tx: ServiceClient
let rx: ServiceClient
let oldKey: PrivateKey
let oldFingerprint: string
let appliedAt = 0
const got: number[] = []

async function sendRange (from: number, to: number): Promise<void> {
  const sends: Array<Promise<unknown>> = []
  for (let i = from; i < to; i++) sends.push(tx.send('kr.item', { i }, { to: b.uuid }))
  await Promise.all(sends)
}

const refusals = async (p: PeerProcess, code: string): Promise<number> => Number((await p.ctl('status')).stats.refusals[code] ?? 0)

/**
 * A GPG+ frame "from A" signed with `key`, sent to B as the first frame of a
 * new connection, the way A's link opens. The ciphertext is junk: B checks
 * the signature before decrypting (RFC 3), so what B does first tells
 * whether it took the signature: a refused signature closes the connection
 * with 4401 BadSignatureError at once (and counts a bad-signature refusal).
 * Past the signature, B goes on as with any connection of A's: it keeps or
 * refuses it as a duplicate of A's real one, and the junk never decrypts.
 */
async function forge (key: PrivateKey): Promise<{ code: number, reason: string } | null> {
  const header = { v: 1 as const, from: a.uuid, to: b.uuid, type: 2 as const, iat: Math.floor(Date.now() / 1000) }
  const signed = gpgPlusSigned(header, randomBytes(64))
  const frame = encodeGpgPlus(signed, await signDetached(signed, key))
  const ws = new WebSocket(`ws://${b.address}/center/v1`, { perMessageDeflate: false })
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
  const closed = new Promise<{ code: number, reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  ws.send(frame)
  const r = await Promise.race([closed, sleep(3000).then(() => null)])
  if (r === null) { ws.close(); await closed }
  return r
}

before(async () => {
  user = await createTestUser()
  a = await PeerProcess.create({ name: 'kr-a' })
  b = await PeerProcess.create({ name: 'kr-b' })
  await a.start()
  await b.start()
  // joining takes a day-long TTL: the short one only from here on
  await joinPeers(a, b, user.name)
  for (const p of [a, b]) {
    await p.stop()
    appendFileSync(p.configPath, LIMITS)
    await p.start()
  }
  await waitFor('the link to open again', async () => (await a.ctl('peer', 'list')).some((p: any) => p.uuid === b.uuid && p.connection === 'open'), 30_000, 200)
  tx = await connectService({ socket: a.servicesSocket, token: (await a.ctl('service', 'add', 'kr', '--send', 'kr.item')).token })
  rx = await connectService({ socket: b.servicesSocket, token: (await b.ctl('service', 'add', 'kr', '--receive', 'kr.item')).token })
  await rx.subscribe(['kr.item'], (ev) => { got.push((ev.data as { i: number }).i) })
  oldKey = await readPrivateKey(readFileSync(join(a.stateDir, 'identity', 'openpgp.key'), 'utf8'))
  oldFingerprint = (await a.ctl('whoami')).fingerprint
})

after(async () => {
  await tx?.close()
  await rx?.close()
  await a?.destroy()
  await b?.destroy()
  await user?.remove()
})

test('rotate on A: B pins the new key, events sent before, during and after flow in order', { timeout: 120_000 }, async () => {
  await sendRange(0, 20)
  await waitFor('20 events before the rotation', () => got.length === 20, 30_000)

  const r = await a.ctl('key', 'rotate')
  assert.equal(r.previous, oldFingerprint)
  assert.notEqual(r.fingerprint, oldFingerprint)
  assert.deepEqual(r.announcedTo, [b.uuid])
  assert.equal((await a.ctl('whoami')).fingerprint, r.fingerprint)
  assert.equal(readFileSync(join(a.stateDir, 'identity', 'openpgp.pub'), 'utf8'), (await a.ctl('whoami')).publicKey)
  await sendRange(20, 40) // in flight while B takes the new key

  await waitFor('B to pin A\'s new key', async () => {
    const row = (await b.ctl('peer', 'list') as Array<{ uuid: string, fingerprint: string }>).find((p) => p.uuid === a.uuid)
    return row?.fingerprint === r.fingerprint
  }, 30_000, 200)
  appliedAt = Date.now()
  await waitFor('A to hear B\'s confirmation', async () => (await a.ctl('key', 'status')).waitingFor.length === 0, 30_000, 200)
  assert.equal((await a.ctl('key', 'status')).fingerprint, r.fingerprint)

  await sendRange(40, 60) // signed with the new key only
  await waitFor('60 events', () => got.length >= 60, 30_000)
  assert.deepEqual(got, Array.from({ length: 60 }, (_, i) => i))
  assert.equal(await refusals(b, 'bad-signature'), 0, 'no frame of A was refused on the way')
})

test('within the grace period a frame signed by A\'s old key is taken (in flight); an unrelated key never is', { timeout: 90_000 }, async () => {
  assert.equal(existsSync(join(a.stateDir, 'identity', 'openpgp.key.prev')), false, 'A drops its old private key once every peer confirmed')
  const stranger = await readPrivateKey((await generateKeyPair('stranger.test')).privateArmored)
  const before = await refusals(b, 'bad-signature')
  assert.deepEqual(await forge(stranger), { code: 4401, reason: 'BadSignatureError' })
  assert.equal(await refusals(b, 'bad-signature'), before + 1)

  const taken = await forge(oldKey)
  assert.notEqual(taken?.code, 4401, `B took the old key's signature: ${JSON.stringify(taken)}`)
  assert.equal(await refusals(b, 'bad-signature'), before + 1, 'not refused for its signature')
  await sendRange(60, 70)
  await waitFor('70 events after the forged connection went away', () => got.length >= 70, 60_000)
  assert.deepEqual(got, Array.from({ length: 70 }, (_, i) => i))
})

test('after the grace period a frame signed by A\'s old key is refused, with the reason', { timeout: 120_000 }, async () => {
  const wait = appliedAt + (GRACE + 2) * 1000 - Date.now()
  if (wait > 0) await sleep(wait)
  const before = await refusals(b, 'bad-signature')
  assert.deepEqual(await forge(oldKey), { code: 4401, reason: 'BadSignatureError' })
  assert.equal(await refusals(b, 'bad-signature'), before + 1)
  const line = b.logs().filter((l) => l.msg === 'refused' && l.code === 'bad-signature').pop()
  assert.match(String(line?.reason), new RegExp(`signed with ${a.uuid}'s previous key ${oldFingerprint}, retired \\d+ s ago`))
  await sendRange(70, 80)
  await waitFor('80 events', () => got.length >= 80, 60_000)
  assert.deepEqual(got, Array.from({ length: 80 }, (_, i) => i))
})

test('a peer offline during the rotation takes the key when it is back; a second rotation waits for it', { timeout: 120_000 }, async () => {
  await b.stop()
  const r = await a.ctl('key', 'rotate')
  await assert.rejects(a.ctl('key', 'rotate'), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'conflict')
    assert.match(err.message, new RegExp(`not confirmed yet by ${b.uuid}`))
    return true
  })
  assert.deepEqual((await a.ctl('key', 'status')).waitingFor, [b.uuid])
  await sendRange(80, 90) // queued on A while B is down
  await b.start()
  await waitFor('B to pin the new key', async () => (await b.ctl('peer', 'list')).find((p: any) => p.uuid === a.uuid)?.fingerprint === r.fingerprint, 30_000, 200)
  await waitFor('A to hear B\'s confirmation', async () => (await a.ctl('key', 'status')).waitingFor.length === 0, 30_000, 200)
  await sendRange(90, 100)
  await waitFor('100 events', () => got.length >= 100, 30_000)
  assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => i))
})
