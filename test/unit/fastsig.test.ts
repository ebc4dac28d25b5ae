import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as openpgp from 'openpgp'
import { createFastSigner, createFastVerifier, fastSignerFor, fastVerifierFor, FastSigUnsupportedError, type FastVerifier } from '../../src/identity/fastsig.js'
import { fingerprintOf, generateKeyPair, readPrivateKey, readPublicKey, signDetached, signText, verifyDetached } from '../../src/identity/openpgp.js'
import { BadSignatureError } from '../../src/errors.js'
import { gpgHome, killAgent } from '../_util/gpg.js'

let priv: openpgp.PrivateKey
let pub: openpgp.PublicKey
let privArmored: string
let pubArmored: string
let otherPriv: openpgp.PrivateKey
let otherPub: openpgp.PublicKey

before(async () => {
  const a = await generateKeyPair('fastsig-a.example')
  privArmored = a.privateArmored
  pubArmored = a.publicArmored
  priv = await readPrivateKey(a.privateArmored)
  pub = await readPublicKey(a.publicArmored)
  const b = await generateKeyPair('fastsig-b.example')
  otherPriv = await readPrivateKey(b.privateArmored)
  otherPub = await readPublicKey(b.publicArmored)
})

const sizes = [0, 1, 300, 4096, 70_000]

/** A detached signature by openpgp.js's signature packet, with the hash and date we choose. */
async function handSign (data: Uint8Array, hash: openpgp.enums.hash, date: Date): Promise<Uint8Array> {
  const literal = (await openpgp.createMessage({ binary: data })).packets[0] as openpgp.LiteralDataPacket
  const packet = new openpgp.SignaturePacket()
  packet.signatureType = openpgp.enums.signature.binary
  packet.publicKeyAlgorithm = openpgp.enums.publicKey.eddsaLegacy
  packet.hashAlgorithm = hash
  await (packet as unknown as { sign: (...a: unknown[]) => Promise<void> }).sign(priv.keyPacket, literal, date, true, openpgp.config)
  const list = new openpgp.PacketList()
  list.push(packet)
  return list.write()
}

/** The octet range of the unhashed subpacket area (unsigned, so a change there can still verify). */
function unhashedRange (sig: Uint8Array): [number, number] {
  const hdr = sig[0]! & 0x40 ? (sig[1]! < 192 ? 2 : 3) : 1 + (1 << (sig[0]! & 3))
  const hashedLen = (sig[hdr + 4]! << 8) + sig[hdr + 5]!
  const at = hdr + 6 + hashedLen
  return [at, at + 2 + (sig[at]! << 8) + sig[at + 1]!]
}

/** Octet lengths of the MPIs r and s (under 32 when the value had leading zero octets). */
function mpiLengths (sig: Uint8Array): [number, number] {
  const at = unhashedRange(sig)[1] + 2
  const r = (((sig[at]! << 8) + sig[at + 1]!) + 7) >> 3
  const sAt = at + 2 + r
  return [r, (((sig[sAt]! << 8) + sig[sAt + 1]!) + 7) >> 3]
}

/** Data whose signature has an MPI shorter than 32 octets (about 1 in 128). */
async function shortMpi (signFn: (d: Uint8Array) => Uint8Array | Promise<Uint8Array>): Promise<{ data: Uint8Array, sig: Uint8Array }> {
  for (let i = 0; i < 10_000; i++) {
    const data = randomBytes(40)
    const sig = await signFn(data)
    if (mpiLengths(sig).some((n) => n < 32)) return { data, sig }
  }
  throw new Error('no short MPI in 10,000 signatures')
}

test('signatures of the fast signer verify with openpgp.js', async () => {
  const signer = createFastSigner(priv)
  for (const n of sizes) {
    const data = randomBytes(n)
    const sig = signer.sign(data)
    await verifyDetached(data, sig, pub)
    // and its packet is what we said: v4, binary, EdDSA legacy, SHA-512, issuer fingerprint + key id
    const packet = (await openpgp.readSignature({ binarySignature: sig })).packets[0]!
    assert.equal(packet.version, 4)
    assert.equal(packet.signatureType, openpgp.enums.signature.binary)
    assert.equal(packet.publicKeyAlgorithm, openpgp.enums.publicKey.eddsaLegacy)
    assert.equal(packet.hashAlgorithm, openpgp.enums.hash.sha512)
    assert.equal(packet.issuerKeyID.toHex(), pub.getKeyID().toHex())
    assert.equal(Buffer.from(packet.issuerFingerprint as Uint8Array).toString('hex'), fingerprintOf(pub))
    assert.ok(Math.abs(packet.created!.getTime() - Date.now()) < 5000)
  }
  // r or s with leading zero octets: stripped, and the bit count says so
  const { data, sig } = await shortMpi((d) => signer.sign(d))
  await verifyDetached(data, sig, pub)
})

test('signatures of openpgp.js verify with the fast verifier (SHA-512, SHA-384, SHA-256)', async () => {
  const verifier = createFastVerifier(pub)
  for (const n of sizes) {
    const data = randomBytes(n)
    assert.equal(verifier.verify(data, await signDetached(data, priv)), true, `${n} bytes`)
  }
  // openpgp.sign always picks SHA-512 for these keys (their first preference): make the others by hand
  for (const hash of [openpgp.enums.hash.sha256, openpgp.enums.hash.sha384]) {
    const data = randomBytes(1000)
    const sig = await handSign(data, hash, new Date())
    await verifyDetached(data, sig, pub)
    assert.equal((await openpgp.readSignature({ binarySignature: sig })).packets[0]!.hashAlgorithm, hash)
    assert.equal(verifier.verify(data, sig), true, `hash ${hash}`)
  }
  const short = await shortMpi(async (d) => await signDetached(d, priv))
  assert.equal(verifier.verify(short.data, short.sig), true, 'short MPI from openpgp.js')
  // and its own
  const data = randomBytes(4096)
  assert.equal(verifier.verify(data, createFastSigner(priv).sign(data)), true)
})

test('old-format and 5-octet packet headers are read', () => {
  const data = randomBytes(100)
  const sig = createFastSigner(priv).sign(data)
  const body = sig.subarray(2)
  const verifier = createFastVerifier(pub)
  const oldOne = Buffer.concat([Buffer.from([0x88, body.length]), body]) // GnuPG writes these
  const oldTwo = Buffer.concat([Buffer.from([0x89, 0, body.length]), body])
  const oldFour = Buffer.concat([Buffer.from([0x8a, 0, 0, 0, body.length]), body])
  const newFive = Buffer.concat([Buffer.from([0xc2, 0xff, 0, 0, 0, body.length]), body])
  for (const s of [oldOne, oldTwo, oldFour, newFive]) assert.equal(verifier.verify(data, s), true, s.subarray(0, 6).toString('hex'))
})

test('tampered data, tampered signatures and other keys are refused', async () => {
  const data = randomBytes(4096)
  const fast = createFastSigner(priv).sign(data)
  const slow = await signDetached(data, priv)
  const verifier = createFastVerifier(pub)
  const bad = Buffer.from(data)
  bad[100] = bad[100]! ^ 1
  for (const sig of [fast, slow]) {
    assert.equal(verifier.verify(bad, sig), false)
    assert.equal(verifier.verify(data.subarray(1), sig), false)
    assert.equal(verifier.verify(Buffer.concat([data, Buffer.from([0])]), sig), false)
    // last octet of s, first octet of r's value, the left 16 bits, the creation time
    const [, uEnd] = unhashedRange(sig)
    for (const at of [sig.length - 1, uEnd + 5, uEnd, uEnd + 1, 10]) {
      const t = Buffer.from(sig)
      t[at] = t[at]! ^ 0x10
      assert.equal(verifier.verify(data, t), false, `octet ${at}`)
    }
  }
  await assert.rejects(verifyDetached(bad, fast, pub), BadSignatureError)
  // another key: by issuer, and by the signature itself with our issuer pasted in
  assert.equal(createFastVerifier(otherPub).verify(data, fast), false)
  assert.equal(createFastVerifier(otherPub).verify(data, slow), false)
  assert.equal(verifier.verify(data, createFastSigner(otherPriv).sign(data)), false)
  await assert.rejects(verifyDetached(data, fast, otherPub), BadSignatureError)
})

test('signatures the fast path does not handle are answered null', async () => {
  const data = randomBytes(64)
  const verifier = createFastVerifier(pub)
  // text mode (0x01)
  const text = await signText('hello', priv)
  const textSig = (await openpgp.readSignature({ armoredSignature: text })).write()
  assert.equal(verifier.verify(Buffer.from('hello'), textSig), null)
  // armored
  const armored = await openpgp.sign({ message: await openpgp.createMessage({ binary: data }), signingKeys: priv, detached: true })
  assert.equal(verifier.verify(data, Buffer.from(armored)), null)
  // a critical notation openpgp.js does not know
  const critical = await openpgp.sign({
    message: await openpgp.createMessage({ binary: data }), signingKeys: priv, detached: true, format: 'binary',
    signatureNotations: [{ name: 'x@center.example', value: new Uint8Array([1]), humanReadable: false, critical: true }]
  }) as Uint8Array
  assert.equal(verifier.verify(data, critical), null)
  await assert.rejects(verifyDetached(data, critical, pub))
  // two signatures in a row
  const one = createFastSigner(priv).sign(data)
  assert.equal(verifier.verify(data, Buffer.concat([one, one])), null)
  // a RFC 9580 Ed25519 key (algorithm 27): no fast signer, a verifier that answers null
  const { privateKey: k27 } = await openpgp.generateKey({ type: 'curve25519', userIDs: [{ email: 'x@y.example' }], format: 'object' })
  assert.throws(() => createFastSigner(k27), FastSigUnsupportedError)
  const sig27 = await signDetached(data, k27)
  assert.equal(createFastVerifier(k27.toPublic()).verify(data, sig27), null)
  assert.equal(verifier.verify(data, sig27), null) // algorithm 27 in the packet
  // an encrypted key cannot sign fast
  const locked = await openpgp.encryptKey({ privateKey: priv, passphrase: 'pw' })
  assert.throws(() => createFastSigner(locked), FastSigUnsupportedError)
  assert.equal(await fastSignerFor(locked), null)
})

test('time: signatures from the future are refused, keys newer than the signature too', async () => {
  const data = randomBytes(64)
  const verifier = createFastVerifier(pub)
  const future = await openpgp.sign({ message: await openpgp.createMessage({ binary: data }), signingKeys: priv, detached: true, format: 'binary', date: new Date(Date.now() + 3600_000) }) as Uint8Array
  assert.equal(verifier.verify(data, future), false)
  await assert.rejects(verifyDetached(data, future, pub))
  const past = await handSign(data, openpgp.enums.hash.sha512, new Date(priv.getCreationTime().getTime() - 86400_000))
  assert.equal(verifier.verify(data, past), false)
  await assert.rejects(verifyDetached(data, past, pub), (err: any) => err.code === 'bad-signature')
})

test('the cache gives one signer and one verifier per key; a revoked key gets null answers', async () => {
  const s1 = await fastSignerFor(priv)
  assert.ok(s1 !== null)
  assert.equal(await fastSignerFor(priv), s1)
  const v1 = await fastVerifierFor(pub)
  assert.equal(await fastVerifierFor(pub), v1)
  const data = randomBytes(300)
  const sig = s1.sign(data)
  assert.equal(v1.verify(data, sig), true)
  await verifyDetached(data, sig, pub)
  const { publicKey: revoked } = await openpgp.revokeKey({ key: priv, format: 'object' })
  assert.equal((await fastVerifierFor(revoked)).verify(data, sig), null)
  await assert.rejects(verifyDetached(data, sig, revoked))
  assert.equal((await fastVerifierFor(otherPub)).verify(data, sig), false)
})

test('garbage never throws and never verifies', () => {
  const data = randomBytes(512)
  const sig = createFastSigner(priv).sign(data)
  const verifiers: FastVerifier[] = [createFastVerifier(pub), createFastVerifier(otherPub)]
  const seen = (s: Uint8Array, d: Uint8Array = data): Array<boolean | null> => verifiers.map((v) => v.verify(d, s))
  // every truncation and every extension
  for (let n = 0; n < sig.length; n++) for (const r of seen(sig.subarray(0, n))) assert.notEqual(r, true, `truncated to ${n}`)
  for (const r of seen(Buffer.concat([sig, randomBytes(3)]))) assert.notEqual(r, true)
  // every single-bit flip outside the unsigned area and the MPI bit counts (like
  // openpgp.js and GnuPG, only the octet count they imply is checked)
  const [uFrom, uTo] = unhashedRange(sig)
  const rBits = uTo + 2
  const sBits = rBits + 2 + ((((sig[rBits]! << 8) + sig[rBits + 1]!) + 7) >> 3)
  const unsigned = (at: number): boolean => (at >= uFrom && at < uTo) || at === rBits || at === rBits + 1 || at === sBits || at === sBits + 1
  for (let at = 0; at < sig.length; at++) {
    for (let bit = 0; bit < 8; bit++) {
      const t = Buffer.from(sig)
      t[at] = t[at]! ^ (1 << bit)
      const r = seen(t)
      if (!unsigned(at)) assert.notEqual(r[0], true, `flip ${at}.${bit}`)
      assert.notEqual(r[1], true)
    }
  }
  // random octets, random octets behind a plausible header, random lengths
  for (let i = 0; i < 3000; i++) {
    const junk = randomBytes(i % 200)
    for (const r of seen(junk)) assert.notEqual(r, true)
    const framed = Buffer.concat([Buffer.from([0xc2, junk.length + 6, 4, 0, 22, 10]), junk])
    for (const r of seen(framed)) assert.notEqual(r, true)
    const spliced = Buffer.from(sig)
    const at = 8 + (i % (sig.length - 8))
    randomBytes(Math.min(4, sig.length - at)).copy(spliced, at)
    // a random byte may equal the one it replaces (1 in 256 at the last octet): that is no splice
    if (spliced.equals(Buffer.from(sig))) continue
    if (![at, at + 1, at + 2, at + 3].some(unsigned)) assert.notEqual(seen(spliced)[0], true, `splice at ${at}`)
  }
  // not bytes at all
  for (const v of verifiers) {
    assert.equal(v.verify(data, undefined as unknown as Uint8Array), false)
    assert.equal(v.verify(null as unknown as Uint8Array, sig), false)
    assert.equal(v.verify(data, 'x'.repeat(200) as unknown as Uint8Array), false)
    assert.equal(v.verify(data, new Uint8Array(0)), false)
  }
})

const hasGpg = spawnSync('gpg', ['--version'], { stdio: 'ignore' }).status === 0

test('GnuPG verifies fast signatures, and the fast verifier accepts GnuPG\'s', { skip: hasGpg ? false : 'gpg is not on PATH' }, async () => {
  const g = gpgHome()
  try {
    const fpr = fingerprintOf(pub).toUpperCase()
    writeFileSync(join(g.home, 'a.pub.asc'), pubArmored)
    const imp = g.gpg(['--import', join(g.home, 'a.pub.asc')])
    assert.equal(imp.status, 0, imp.out)
    const data = randomBytes(4096)
    writeFileSync(join(g.home, 'data.bin'), data)
    writeFileSync(join(g.home, 'fast.sig'), createFastSigner(priv).sign(data))
    const v = g.gpg(['--verify', join(g.home, 'fast.sig'), join(g.home, 'data.bin')])
    assert.equal(v.status, 0, v.out)
    assert.match(v.out, /Good signature/)
    assert.match(v.out, new RegExp(fpr.slice(-16)))
    const short = await shortMpi((d) => createFastSigner(priv).sign(d))
    writeFileSync(join(g.home, 'short.bin'), short.data)
    writeFileSync(join(g.home, 'short.sig'), short.sig)
    const vs = g.gpg(['--verify', join(g.home, 'short.sig'), join(g.home, 'short.bin')])
    assert.equal(vs.status, 0, `MPIs of ${mpiLengths(short.sig).join('/')} octets: ${vs.out}`)
    // and GnuPG notices a change of one octet
    const bad = Buffer.from(data)
    bad[0] = bad[0]! ^ 1
    writeFileSync(join(g.home, 'bad.bin'), bad)
    const vb = g.gpg(['--verify', join(g.home, 'fast.sig'), join(g.home, 'bad.bin')])
    assert.notEqual(vb.status, 0, vb.out)
    assert.match(vb.out, /BAD signature/)

    // GnuPG signs with the same secret key; default digest, then SHA-256
    writeFileSync(join(g.home, 'a.key.asc'), privArmored)
    const imps = g.gpg(['--import', join(g.home, 'a.key.asc')])
    assert.equal(imps.status, 0, imps.out)
    const verifier = createFastVerifier(pub)
    for (const extra of [[], ['--digest-algo', 'SHA256']]) {
      const out = join(g.home, `gpg${extra.length}.sig`)
      const s = g.gpg([...extra, '--local-user', fpr, '--output', out, '--detach-sign', join(g.home, 'data.bin')])
      assert.equal(s.status, 0, s.out)
      const gsig = readFileSync(out)
      if (extra.length > 0) assert.equal((await openpgp.readSignature({ binarySignature: gsig })).packets[0]!.hashAlgorithm, openpgp.enums.hash.sha256)
      assert.equal(verifier.verify(data, gsig), true, `gpg ${extra.join(' ')}: ${gsig.toString('hex')}`)
      assert.equal(verifier.verify(bad, gsig), false)
      assert.equal(createFastVerifier(otherPub).verify(data, gsig), false)
    }
  } finally {
    killAgent(g.home)
    rmSync(g.home, { recursive: true, force: true })
  }
})

test('a peer whose clock runs a minute fast is not refused (freshness is the frame header\'s job)', async () => {
  const data = randomBytes(64)
  const ahead = await openpgp.sign({ message: await openpgp.createMessage({ binary: data }), signingKeys: priv, detached: true, format: 'binary', date: new Date(Date.now() + 60_000) }) as Uint8Array
  assert.equal(createFastVerifier(pub).verify(data, ahead), true)
  await verifyDetached(data, ahead, pub)
})
