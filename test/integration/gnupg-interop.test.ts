import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { connectService, type ServiceClient, type ServiceEvent } from '../../src/sdk/index.js'
import { decodeFrame, encodeGpgPlus } from '../../src/wire/frame.js'
import { createTestUser } from '../_util/peers.js'
import { joinInProcess, startInProcessPeer, type InProcessPeer } from '../_util/inproc.js'
import { tapLink } from '../_util/tap.js'
import { ensureGpg, gpgHome, killAgent } from '../_util/gpg.js'
import { waitFor } from '../_util/wait.js'

// Real interoperability with GnuPG, both ways: a frame off the wire verifies
// with `gpg --verify` against the sender's exported key, and a frame whose
// signature GnuPG made (with the sender's exported secret key) is accepted.
let a: InProcessPeer
let b: InProcessPeer
let user: Awaited<ReturnType<typeof createTestUser>>
let tx: ServiceClient
let rx: ServiceClient
let g: ReturnType<typeof gpgHome>
const got: ServiceEvent[] = []

before(async () => {
  ensureGpg()
  g = gpgHome()
  user = await createTestUser()
  a = await startInProcessPeer('gpg-a')
  b = await startInProcessPeer('gpg-b')
  await joinInProcess(a, b, user.name)
  tx = await connectService({ socket: a.daemon.ctx.cfg.services.socket, token: (await a.daemon.ctx.registry.add('mail', { receive: [], send: ['mail.note'] })).token })
  rx = await connectService({ socket: b.daemon.ctx.cfg.services.socket, token: (await b.daemon.ctx.registry.add('mail', { receive: ['mail.note'], send: [] })).token })
  await rx.subscribe(['mail.note'], (ev) => { got.push(ev) })
})

after(async () => {
  await tx?.close()
  await rx?.close()
  await a?.stop()
  await b?.stop()
  await user?.remove()
  if (g !== undefined) { killAgent(g.home); rmSync(g.home, { recursive: true, force: true }) }
})

test('a frame off the wire holds no plaintext and its signature verifies with gpg --verify', async () => {
  const secret = 'PLAINTEXT-MARKER-7f3a9c'
  const tap = tapLink(a, b.uuid)
  const held = tap.holdNext()
  const sent = tx.send('mail.note', { body: secret }, { to: b.uuid })
  const frame = await held
  frame.release()
  tap.restore()
  await sent
  await waitFor('the note on B', () => got.some((e) => (e.data as any).body === secret))
  assert.equal(frame.data.includes(Buffer.from(secret)), false, 'no plaintext of the data in the frame')
  assert.equal(frame.data.includes(Buffer.from('mail.note')), false, 'not even the event name')
  assert.equal(frame.data.subarray(0, 4).toString(), 'GPG+')
  const f = decodeFrame(frame.data)
  if (f.kind !== 'gpg+') throw new Error('expected GPG+')
  writeFileSync(join(g.home, 'signed.bin'), f.signed)
  writeFileSync(join(g.home, 'frame.sig'), f.signature)
  writeFileSync(join(g.home, 'a.pub.asc'), a.daemon.ctx.identity.publicArmored)
  assert.equal(g.gpg(['--import', join(g.home, 'a.pub.asc')]).status, 0)
  const v = g.gpg(['--verify', join(g.home, 'frame.sig'), join(g.home, 'signed.bin')])
  assert.equal(v.status, 0, v.out)
  assert.match(v.out, /Good signature/)
  // and gpg notices a change of one byte
  const bad = Buffer.from(f.signed)
  bad[bad.length - 1] = (bad[bad.length - 1] ?? 0) ^ 1
  writeFileSync(join(g.home, 'signed.bin'), bad)
  assert.notEqual(g.gpg(['--verify', join(g.home, 'frame.sig'), join(g.home, 'signed.bin')]).status, 0)
})

test('a frame signed by GnuPG with the peer\'s exported secret key is accepted', async () => {
  const armoredSecret = readFileSync(join(a.dir, 'identity', 'openpgp.key'), 'utf8')
  writeFileSync(join(g.home, 'a.key.asc'), armoredSecret)
  const imp = g.gpg(['--import', join(g.home, 'a.key.asc')])
  assert.equal(imp.status, 0, imp.out)
  const tap = tapLink(a, b.uuid)
  const held = tap.holdNext()
  const sent = tx.send('mail.note', { body: 'signed by gnupg' }, { to: b.uuid })
  const frame = await held
  const f = decodeFrame(frame.data)
  if (f.kind !== 'gpg+') throw new Error('expected GPG+')
  writeFileSync(join(g.home, 'out.bin'), f.signed)
  const s = g.gpg(['--local-user', a.daemon.ctx.identity.fingerprint, '--detach-sign', '-o', join(g.home, 'out.sig'), join(g.home, 'out.bin')])
  assert.equal(s.status, 0, s.out)
  const gpgSig = readFileSync(join(g.home, 'out.sig'))
  assert.notDeepEqual(gpgSig, Buffer.from(f.signature), 'a different signature, made by GnuPG')
  tap.sendRaw(encodeGpgPlus(f.signed, gpgSig))
  tap.restore()
  await sent
  await waitFor('the GnuPG-signed note on B', () => got.some((e) => (e.data as any).body === 'signed by gnupg'))
  const refused = b.logs.filter((l) => l.msg === 'refused')
  assert.deepEqual(refused, [], 'nothing was refused')
})
