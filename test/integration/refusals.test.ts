import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import WebSocket from 'ws'
import { connectService, type ServiceClient, type ServiceEvent } from '../../src/sdk/index.js'
import { decodeFrame, encodeGpgPlus, gpgPlusSigned, encodeNew } from '../../src/wire/frame.js'
import { generateKeyPair, readPrivateKey, signDetached, signText } from '../../src/identity/openpgp.js'
import { bundleOf } from '../../src/crypto/bundle.js'
import { nowSeconds } from '../../src/wire/envelope.js'
import { createTestUser } from '../_util/peers.js'
import { joinInProcess, refusals, startInProcessPeer, type InProcessPeer } from '../_util/inproc.js'
import { waitFor } from '../_util/wait.js'
import { tapLink } from '../_util/tap.js'

// Every refusal RFC 3 and the issue name: each gets its typed error and
// exactly one log line on the receiving peer, and a valid event still goes
// through afterwards. A misbehaving peer is a fault the real daemon cannot
// produce, so frames are altered on A's side of the real link (see tap.ts).
let a: InProcessPeer
let b: InProcessPeer
let user: Awaited<ReturnType<typeof createTestUser>>
let tx: ServiceClient
let rx: ServiceClient
const got: ServiceEvent[] = []
let n = 0

before(async () => {
  user = await createTestUser()
  a = await startInProcessPeer('ref-a')
  b = await startInProcessPeer('ref-b', '[limits]\nmax_frame_bytes = 65536')
  await joinInProcess(a, b, user.name)
  const sendSvc = await a.daemon.ctx.registry.add('probe', { receive: [], send: ['probe.ok'] })
  const recvSvc = await b.daemon.ctx.registry.add('probe', { receive: ['probe.ok'], send: [] })
  tx = await connectService({ socket: a.daemon.ctx.cfg.services.socket, token: sendSvc.token })
  rx = await connectService({ socket: b.daemon.ctx.cfg.services.socket, token: recvSvc.token })
  await rx.subscribe(['probe.ok'], (ev) => { got.push(ev) })
})

after(async () => {
  await tx?.close()
  await rx?.close()
  await a?.stop()
  await b?.stop()
  await user?.remove()
})

/** A valid event from A arrives on B, exactly once. */
async function validEventStillFlows (): Promise<void> {
  const mark = `ok-${++n}`
  await tx.send('probe.ok', { mark }, { to: b.uuid })
  await waitFor(`valid event ${mark} on B`, () => got.some((e) => (e.data as any).mark === mark), 20_000)
  assert.equal(got.filter((e) => (e.data as any).mark === mark).length, 1)
}

/** Exactly one new refusal log line with `code` on B. */
async function refusedOnce (code: string, before: number, event?: string): Promise<void> {
  await waitFor(`B to refuse with ${code}`, () => refusals(b, code).length > before, 10_000)
  await new Promise((resolve) => setTimeout(resolve, 200))
  const lines = refusals(b, code).slice(before)
  assert.equal(lines.length, 1, `one log line for ${code}, got ${lines.length}`)
  assert.equal(lines[0]?.peer, a.uuid)
  if (event !== undefined) assert.equal(lines[0]?.event, event)
}

/** Queue a crafted envelope in A's real outbox; A's link signs, encrypts and sends it. */
async function injectEnvelope (text: string): Promise<void> {
  const db = a.daemon.ctx.database.db
  const r = await db.updateTable('peer_seq').set((eb) => ({ next_out: eb('next_out', '+', 1) })).where('peer_uuid', '=', b.uuid).returning('next_out').executeTakeFirstOrThrow()
  const seq = Number(r.next_out) - 1
  await db.insertInto('outbox').values({ peer_uuid: b.uuid, seq, name: 'probe.bad', envelope: text, exp: nowSeconds() + 600 }).execute()
  // what the outbox does after a commit: the link reads only up to what it was told is queued
  a.daemon.ctx.links.queued(new Map([[b.uuid, seq]]))
}

function env (meta: Partial<{ from: string, to: string, iat: number, exp: number }>, name = 'probe.bad'): string {
  const now = nowSeconds()
  return JSON.stringify({ name, meta: { from: a.uuid, to: b.uuid, iat: now, exp: now + 600, ...meta }, data: { x: 1 } })
}

test('a valid event goes through to begin with', async () => {
  await validEventStillFlows()
})

/**
 * Hold A's next frame, send B an altered copy made by `alter`, check B
 * refused it with `code` (once), then let the original through.
 */
async function alteredCopyRefused (code: string, alter: (f: Extract<ReturnType<typeof decodeFrame>, { kind: 'gpg+' }>, raw: Buffer) => Promise<Buffer>): Promise<void> {
  const before = refusals(b, code).length
  const tap = tapLink(a, b.uuid)
  const held = tap.holdNext()
  const sent = tx.send('probe.ok', { mark: `ok-${++n}` }, { to: b.uuid })
  const frame = await held
  const f = decodeFrame(frame.data)
  if (f.kind !== 'gpg+') throw new Error('expected GPG+')
  tap.sendRaw(await alter(f, Buffer.from(frame.data)))
  await refusedOnce(code, before)
  frame.release()
  await sent
  tap.restore()
  await validEventStillFlows()
}

test('tampered ciphertext (re-signed by the real sender) is refused: decrypt', async () => {
  await alteredCopyRefused('decrypt', async (f) => {
    const ct = Buffer.from(f.ciphertext)
    ct[ct.length - 20] = (ct[ct.length - 20] ?? 0) ^ 0xff
    const signed = gpgPlusSigned(f.header, ct)
    return encodeGpgPlus(signed, await signDetached(signed, a.daemon.ctx.identity.privateKey))
  })
})

test('a tampered signature is refused: bad-signature', async () => {
  await alteredCopyRefused('bad-signature', async (_f, raw) => {
    // flip a byte inside the signature block
    const sigStart = 8 + raw.readUInt32BE(4) + 4
    raw[sigStart + 30] = (raw[sigStart + 30] ?? 0) ^ 0x01
    return raw
  })
})

test('a signature by another key is refused: bad-signature', async () => {
  const other = await readPrivateKey((await generateKeyPair('mallory.test')).privateArmored)
  await alteredCopyRefused('bad-signature', async (f) => encodeGpgPlus(f.signed, await signDetached(f.signed, other)))
})

test('a replayed frame is refused: replay', async () => {
  const before = refusals(b, 'replay').length
  const tap = tapLink(a, b.uuid)
  const held = tap.holdNext()
  const sent = tx.send('probe.ok', { mark: `ok-${++n}` }, { to: b.uuid })
  const frame = await held
  frame.release()
  await sent
  await waitFor('the original to arrive', () => got.some((e) => (e.data as any).mark === `ok-${n}`))
  tap.sendRaw(frame.data)
  await refusedOnce('replay', before)
  tap.restore()
  assert.equal(got.filter((e) => (e.data as any).mark === `ok-${n}`).length, 1, 'the replay delivered nothing twice')
  await validEventStillFlows()
})

test('a frame lost in the middle is never covered by a later ack: sequence-gap, then a resend', async () => {
  const before = refusals(b, 'sequence-gap').length
  const tap = tapLink(a, b.uuid)
  const held = tap.holdNext()
  const first = `lost-${++n}`
  const sent1 = tx.send('probe.ok', { mark: first }, { to: b.uuid })
  await held // dropped: never released
  tap.restore()
  await sent1
  const second = `after-${n}`
  await tx.send('probe.ok', { mark: second }, { to: b.uuid })
  await refusedOnce('sequence-gap', before)
  await waitFor('both events after the resend', () => got.some((e) => (e.data as any).mark === first) && got.some((e) => (e.data as any).mark === second), 20_000)
  const marks = got.map((e) => (e.data as any).mark)
  assert.equal(marks.filter((m) => m === first).length, 1)
  assert.equal(marks.filter((m) => m === second).length, 1)
  assert.ok(marks.indexOf(first) < marks.indexOf(second), 'in order')
})

for (const [title, code, text] of [
  ['wrong meta.from', 'wrong-sender', () => env({ from: randomUUID() })],
  ['wrong meta.to', 'wrong-recipient', () => env({ to: randomUUID() })],
  ['exp in the past', 'expired', () => env({ iat: nowSeconds() - 100, exp: nowSeconds() - 10 })],
  ['iat too far in the future', 'from-the-future', () => env({ iat: nowSeconds() + 3600, exp: nowSeconds() + 7200 })],
  ['wrong field types', 'schema', () => JSON.stringify({ name: 'probe.bad', meta: { from: a.uuid, to: b.uuid, iat: String(nowSeconds()), exp: nowSeconds() + 60 }, data: {} })]
] as const) {
  test(`an envelope with ${title} is refused: ${code}`, async () => {
    const before = refusals(b, code).length
    await injectEnvelope(text())
    await refusedOnce(code, before, 'probe.bad')
    await validEventStillFlows()
  })
}

test('a payload that is not JSON is refused: invalid-json', async () => {
  const before = refusals(b, 'invalid-json').length
  await a.daemon.ctx.links.get(b.uuid)?.sendRawPayload('{"events":[{"seq":')
  await refusedOnce('invalid-json', before)
  await validEventStillFlows()
})

test('an oversized frame is refused: frame-too-large, and the link comes back', async () => {
  const before = refusals(b, 'frame-too-large').length
  const tap = tapLink(a, b.uuid)
  tap.sendRaw(Buffer.alloc(70_000, 1))
  tap.restore()
  await refusedOnce('frame-too-large', before)
  await validEventStillFlows()
})

test('a frame from an unknown peer is refused: unknown-peer', async () => {
  const before = refusals(b, 'unknown-peer').length
  const stranger = await readPrivateKey((await generateKeyPair('stranger.test')).privateArmored)
  const header = { v: 1 as const, from: randomUUID(), to: b.uuid, type: 2 as const, iat: nowSeconds() }
  const signed = gpgPlusSigned(header, Buffer.from('not really a ratchet message'))
  const frame = encodeGpgPlus(signed, await signDetached(signed, stranger))
  const closed = await sendRawFrame(b, frame)
  assert.equal(closed, 4401)
  await waitFor('unknown-peer refusal', () => refusals(b, 'unknown-peer').length === before + 1)
  assert.equal(refusals(b, 'unknown-peer').length, before + 1)
  await validEventStillFlows()
})

test('NEW with a wrong secret is refused: bad-secret, and nothing is queued', async () => {
  const before = refusals(b, 'bad-secret').length
  const inv = await b.daemon.ctx.join.invite(user.name)
  const keys = await generateKeyPair('newbie.test')
  const priv = await readPrivateKey(keys.privateArmored)
  const uuid = randomUUID()
  const now = nowSeconds()
  const envelope = {
    name: 'new-peer-server',
    meta: { from: uuid, to: b.uuid, iat: now, exp: now + 600 },
    data: { admin: user.name, server: 'newbie.test', address: '127.0.0.1:1', secret_file: inv.secretFile, dh_pub_key: bundleOf(a.daemon.ctx.identity.signal), gpg_pub_key: keys.publicArmored, signature: await signText('0'.repeat(64), priv) }
  }
  const reply = await sendRawFrame(b, encodeNew(envelope))
  assert.equal(reply, 'bad-secret')
  assert.equal(refusals(b, 'bad-secret').length, before + 1)
  assert.deepEqual((await b.daemon.ctx.join.requests()).filter((r) => r.uuid === uuid), [])
})

test('a service subscribing to an event it was not granted is refused: not-granted', async () => {
  await assert.rejects(rx.subscribe(['secret.stuff'], () => {}), (err: any) => err.code === 'not-granted')
  await validEventStillFlows()
})

test('a service sending an event it was not granted is refused: not-granted', async () => {
  await assert.rejects(tx.send('probe.other', {}, { to: b.uuid }), (err: any) => err.code === 'not-granted')
  await validEventStillFlows()
})

test('a revoked token is refused: bad-token', async () => {
  const svc = await b.daemon.ctx.registry.add('doomed', { receive: ['probe.ok'], send: [] })
  const c = await connectService({ socket: b.daemon.ctx.cfg.services.socket, token: svc.token, reconnect: false })
  await b.daemon.ctx.registry.revoke('doomed')
  await waitFor('the revoked service to be cut off', async () => await c.subscribe(['probe.ok'], () => {}).then(() => false, () => true))
  await assert.rejects(connectService({ socket: b.daemon.ctx.cfg.services.socket, token: svc.token, reconnect: false }), (err: any) => err.code === 'bad-token')
  await c.close()
  await validEventStillFlows()
})

/** Open a raw connection to `p`, send one frame; resolves with the ERR code or the close code. */
async function sendRawFrame (p: InProcessPeer, frame: Buffer): Promise<string | number> {
  const addr = p.daemon.advertise()
  return await new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${addr}/center/v1`)
    ws.on('open', () => ws.send(frame))
    ws.on('message', (d: Buffer) => {
      const f = decodeFrame(d)
      resolve(f.kind === 'err' ? f.body.code : f.kind)
      ws.close()
    })
    ws.on('close', (code) => resolve(code))
    ws.on('error', reject)
  })
}
