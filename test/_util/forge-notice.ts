import { randomBytes, randomUUID } from 'node:crypto'
import WebSocket from 'ws'
import { encryptAndSign, generateKeyPair, readPrivateKey, readPublicKey, signDetached } from '../../src/identity/openpgp.js'
import { sendOneShot } from '../../src/transport/oneshot.js'
import { encodeGpg, encodeGpgPlus, gpgPlusSigned } from '../../src/wire/frame.js'
import { nowSeconds } from '../../src/wire/envelope.js'

/**
 * A box that is not a peer, sending forged excommunication notices. The
 * daemon never makes such frames, so a test runs this script (inside a
 * network namespace, with `node dist/test/_util/forge-notice.js JSON`) and
 * prints what the target answered, as JSON on stdout:
 * - `stranger`: a GPG control frame from a UUID the target never admitted;
 * - `impostorGpg`: the same, claiming to come from a real peer, signed by another key;
 * - `impostorGpgPlus`: a link frame claiming a real peer, signed by another key.
 */
interface Args { address: string, to: string, toKey: string, claim: string, ban: string }

async function main (): Promise<void> {
  const a = JSON.parse(process.argv[2] ?? '{}') as Args
  const keys = await generateKeyPair('forger.center.test')
  const priv = await readPrivateKey(keys.privateArmored)
  const target = await readPublicKey(a.toKey)
  const notice = (from: string): Buffer => {
    const iat = nowSeconds()
    return Buffer.from(JSON.stringify({ name: 'excommunication', meta: { from, to: a.to, iat, exp: iat + 300 }, data: { uuid: a.ban, reason: 'forged', sponsor: null, nonce: randomBytes(16).toString('hex') } }))
  }
  const oneShot = async (from: string): Promise<unknown> => {
    const body = await encryptAndSign(notice(from), target, priv)
    return await sendOneShot(a.address, encodeGpg({ v: 1, from, to: a.to }, body)).then((ok) => ({ ok }), (err) => ({ code: err.code, message: err.message }))
  }
  const stranger = await oneShot(randomUUID())
  const impostorGpg = await oneShot(a.claim)
  const header = { v: 1 as const, from: a.claim, to: a.to, type: 2 as const, iat: nowSeconds() }
  const signed = gpgPlusSigned(header, randomBytes(200))
  const frame = encodeGpgPlus(signed, await signDetached(signed, priv))
  const impostorGpgPlus = await new Promise((resolve) => {
    const ws = new WebSocket(`ws://${a.address}/center/v1`, { perMessageDeflate: false })
    ws.once('open', () => { ws.send(frame) })
    ws.once('close', (code, reason) => { resolve({ closed: code, reason: reason.toString() }) })
    ws.once('error', (err) => { resolve({ error: err.message }) })
  })
  process.stdout.write(JSON.stringify({ stranger, impostorGpg, impostorGpgPlus }) + '\n')
}

main().catch((err) => { process.stderr.write(String((err as Error).stack) + '\n'); process.exit(1) })
