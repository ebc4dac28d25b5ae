import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseSshPublicKey, parseSshPublicKeys } from '../../src/accounts/keys.js'
import { ecdsaLine, ed25519Line, ed25519PrivatePem, rsaLine, sshLine, str } from './_keys.js'

const E = { name: 'InvalidSshKeyError', code: 'bad-request' }

test('ed25519, ecdsa (256/384/521) and rsa >= 2048 keys are accepted', () => {
  for (const line of [ed25519Line(), ecdsaLine('nistp256'), ecdsaLine('nistp384'), ecdsaLine('nistp521'), rsaLine(2048)]) {
    const k = parseSshPublicKey(line)
    assert.equal(k.line, line)
    assert.match(k.fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/)
  }
  const bare = ed25519Line().split(' ').slice(0, 2).join(' ')
  assert.equal(parseSshPublicKey(`  ${bare}  `).line, bare)
})

test('security-key types are accepted with an ssh: application', () => {
  const pk = Buffer.alloc(32, 7)
  parseSshPublicKey(sshLine('sk-ssh-ed25519@openssh.com', [str(pk), str('ssh:')]))
  assert.throws(() => parseSshPublicKey(sshLine('sk-ssh-ed25519@openssh.com', [str(pk), str('web:')])), E)
})

test('a private key is refused with a message saying it is PRIVATE', () => {
  for (const t of [ed25519PrivatePem(), '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n',
    '-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----', 'PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none']) {
    assert.throws(() => parseSshPublicKey(t), (err: Error) => err.name === 'InvalidSshKeyError' && /PRIVATE key/.test(err.message))
  }
})

test('garbage, unknown types and mismatched blobs are refused', () => {
  const ed = ed25519Line()
  const blob = ed.split(' ')[1] as string
  assert.throws(() => parseSshPublicKey('hello world'), /unknown or unsupported SSH key type/)
  assert.throws(() => parseSshPublicKey(''), /not an SSH public key/)
  assert.throws(() => parseSshPublicKey(`ssh-dss ${blob}`), /unknown or unsupported/)
  assert.throws(() => parseSshPublicKey(`ssh-ed25519-cert-v01@openssh.com ${blob}`), /unknown or unsupported/)
  assert.throws(() => parseSshPublicKey(`ssh-rsa ${blob}`), /data is a "ssh-ed25519" key/)
  assert.throws(() => parseSshPublicKey('ssh-ed25519 !!!notbase64'), /not valid base64/)
  assert.throws(() => parseSshPublicKey(`ssh-ed25519 ${blob.slice(0, 20)}`), E)
  assert.throws(() => parseSshPublicKey(sshLine('ssh-ed25519', [str(Buffer.alloc(31))])), /32 bytes/)
  assert.throws(() => parseSshPublicKey(sshLine('ssh-ed25519', [str(Buffer.alloc(32)), Buffer.from([1])])), /trailing/)
  assert.throws(() => parseSshPublicKey(`${ed}\n${ed}`), /one SSH key per entry/)
  assert.throws(() => parseSshPublicKey(`command="sh" ${ed}`), /unknown or unsupported/)
  assert.throws(() => parseSshPublicKey(`${ed}\u0007bell`), /control/)
  assert.throws(() => parseSshPublicKey(42), E)
})

test('an ecdsa point that is not on the curve is refused', () => {
  const q = Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 1)])
  assert.throws(() => parseSshPublicKey(sshLine('ecdsa-sha2-nistp256', [str('nistp256'), str(q)])), /not on curve/)
  assert.throws(() => parseSshPublicKey(sshLine('ecdsa-sha2-nistp256', [str('nistp384'), str(q)])), /does not match/)
})

test('rsa keys under 2048 bits are refused', () => {
  assert.throws(() => parseSshPublicKey(rsaLine(1024)), /1024 bits; at least 2048/)
})

test('a 1 MB key blob is refused by size before any parsing', () => {
  const big = `ssh-ed25519 ${Buffer.alloc(1024 * 1024, 1).toString('base64')}`
  assert.throws(() => parseSshPublicKey(big), /larger than 16384 bytes/)
})

test('key lists: at most 32, duplicates dropped, errors name the key', () => {
  const a = ed25519Line()
  assert.equal(parseSshPublicKeys([a, a]).length, 1)
  assert.throws(() => parseSshPublicKeys(Array.from({ length: 33 }, () => a)), /at most 32/)
  assert.throws(() => parseSshPublicKeys([a, 'junk']), /SSH key #2/)
  assert.throws(() => parseSshPublicKeys('notalist'), E)
})
