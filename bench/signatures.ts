import { randomBytes } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { createFastSigner, createFastVerifier } from '../src/identity/fastsig.js'
import * as openpgp from 'openpgp'
import { generateKeyPair, readPrivateKey, readPublicKey, verifyDetached } from '../src/identity/openpgp.js'

// openpgp.js itself, as the daemon used it before the fast path (the baseline)
async function pgpSign (data: Uint8Array, key: openpgp.PrivateKey): Promise<Uint8Array> {
  return await openpgp.sign({ message: await openpgp.createMessage({ binary: data }), signingKeys: key, detached: true, format: 'binary' }) as Uint8Array
}

async function pgpVerify (data: Uint8Array, sig: Uint8Array, key: openpgp.PublicKey): Promise<void> {
  const { signatures } = await openpgp.verify({ message: await openpgp.createMessage({ binary: data }), signature: await openpgp.readSignature({ binarySignature: sig }), verificationKeys: key, expectSigned: true })
  await signatures[0]?.verified
}

/**
 * Detached signatures over a 4 KiB frame body, one at a time: openpgp.js
 * (`signDetached`/`verifyDetached`) against the node:crypto fast path
 * (`src/identity/fastsig.ts`). Each figure is ~2 s after a 300 ms warm-up;
 * CPU µs/op is process user+sys time per operation.
 */
interface Result { name: string, value: number, unit: string, target?: string }

const SECONDS = 2
const WARMUP_MS = 300

async function measure (op: () => unknown): Promise<{ perSecond: number, cpuMicros: number }> {
  const warm = performance.now()
  while (performance.now() - warm < WARMUP_MS) await op()
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  let n = 0
  let elapsed = 0
  while (elapsed < SECONDS * 1000) {
    // batches of 16 keep the clock reads out of the figure
    for (let i = 0; i < 16; i++) await op()
    n += 16
    elapsed = performance.now() - t0
  }
  const cpu = process.cpuUsage(cpu0)
  return { perSecond: Math.round(n / (elapsed / 1000)), cpuMicros: Math.round(((cpu.user + cpu.system) / n) * 10) / 10 }
}

export async function benchSignatures (): Promise<Result[]> {
  const { privateArmored, publicArmored } = await generateKeyPair('bench.example')
  const priv = await readPrivateKey(privateArmored)
  const pub = await readPublicKey(publicArmored)
  const data = randomBytes(4096)
  const signer = createFastSigner(priv)
  const verifier = createFastVerifier(pub)
  const slowSig = await pgpSign(data, priv)
  const fastSig = signer.sign(data)
  if (verifier.verify(data, slowSig) !== true || verifier.verify(data, fastSig) !== true) throw new Error('fast verifier refuses a good signature')
  await verifyDetached(data, fastSig, pub)

  const slowSign = await measure(async () => await pgpSign(data, priv))
  const slowVerify = await measure(async () => { await pgpVerify(data, slowSig, pub) })
  const fastSign = await measure(() => signer.sign(data))
  const fastVerify = await measure(() => {
    if (verifier.verify(data, fastSig) !== true) throw new Error('fast verify failed')
  })
  const ratio = (a: number, b: number): number => Math.round((a / b) * 10) / 10
  return [
    { name: 'openpgp.js sign 4 KiB', value: slowSign.perSecond, unit: 'signs/s' },
    { name: 'openpgp.js sign 4 KiB CPU', value: slowSign.cpuMicros, unit: 'µs/op' },
    { name: 'fast sign 4 KiB', value: fastSign.perSecond, unit: 'signs/s' },
    { name: 'fast sign 4 KiB CPU', value: fastSign.cpuMicros, unit: 'µs/op' },
    { name: 'openpgp.js verify 4 KiB', value: slowVerify.perSecond, unit: 'verifies/s' },
    { name: 'openpgp.js verify 4 KiB CPU', value: slowVerify.cpuMicros, unit: 'µs/op' },
    { name: 'fast verify 4 KiB', value: fastVerify.perSecond, unit: 'verifies/s' },
    { name: 'fast verify 4 KiB CPU', value: fastVerify.cpuMicros, unit: 'µs/op' },
    { name: 'sign speed-up (fast / openpgp.js)', value: ratio(fastSign.perSecond, slowSign.perSecond), unit: '×' },
    { name: 'verify speed-up (fast / openpgp.js)', value: ratio(fastVerify.perSecond, slowVerify.perSecond), unit: '×' }
  ]
}

// `node dist/bench/signatures.js` on its own prints the table
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const r of await benchSignatures()) process.stdout.write(`${r.name.padEnd(38)} ${String(r.value).padStart(8)} ${r.unit}\n`)
}
