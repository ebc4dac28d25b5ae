import { createHash, createPublicKey } from 'node:crypto'
import { InvalidSshKeyError } from './errors.js'

/**
 * SSH public key validation. A key is one `type base64 [comment]` line, as in
 * a `.pub` file; authorized_keys options are not accepted (we write the file,
 * users do not get to add `command=` or `from=`). The base64 blob is parsed
 * as SSH wire format and must carry the same type string, the right sizes,
 * and nothing after the last field.
 */

export const KEY_MAX_BYTES = 16 * 1024
export const KEYS_MAX = 32
export const RSA_MIN_BITS = 2048
const RSA_MAX_BITS = 16384
const COMMENT_MAX = 256

export interface SshPublicKey {
  type: string
  /** base64 of the wire-format blob, as it appears in the line */
  blob: string
  comment: string
  /** OpenSSH-style `SHA256:…` fingerprint */
  fingerprint: string
  /** the normalised line: `type blob[ comment]` */
  line: string
}

const ECDSA_CURVES: Record<string, { crv: string, pointLen: number }> = {
  nistp256: { crv: 'P-256', pointLen: 65 },
  nistp384: { crv: 'P-384', pointLen: 97 },
  nistp521: { crv: 'P-521', pointLen: 133 }
}

export const KEY_TYPES: readonly string[] = [
  'ssh-ed25519', 'ssh-rsa',
  'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com', 'sk-ecdsa-sha2-nistp256@openssh.com'
]

const bad = (msg: string): Error => new InvalidSshKeyError(msg)

/** Reads SSH wire-format fields (RFC 4251 §5) from a blob, refusing overruns. */
class WireReader {
  private off = 0
  constructor (private readonly buf: Buffer) {}

  bytes (): Buffer {
    if (this.off + 4 > this.buf.length) throw bad('SSH key blob is truncated')
    const len = this.buf.readUInt32BE(this.off)
    this.off += 4
    if (len > this.buf.length - this.off) throw bad('SSH key blob is truncated')
    const out = this.buf.subarray(this.off, this.off + len)
    this.off += len
    return out
  }

  string (): string { return this.bytes().toString('latin1') }

  end (): void {
    if (this.off !== this.buf.length) throw bad('SSH key blob has trailing data')
  }
}

function bitLength (mpint: Buffer): number {
  let i = 0
  while (i < mpint.length && mpint[i] === 0) i++
  if (i === mpint.length) return 0
  return (mpint.length - i - 1) * 8 + (32 - Math.clz32(mpint[i] as number))
}

function checkRsa (r: WireReader): void {
  const e = r.bytes()
  const n = r.bytes()
  r.end()
  if (e.length === 0 || (e[0] as number) & 0x80 || n.length === 0 || (n[0] as number) & 0x80) throw bad('ssh-rsa key has a negative or empty number')
  if (((e[e.length - 1] as number) & 1) === 0 || bitLength(e) < 2) throw bad('ssh-rsa key has an invalid exponent')
  const bits = bitLength(n)
  if (bits < RSA_MIN_BITS) throw bad(`ssh-rsa key is ${bits} bits; at least ${RSA_MIN_BITS} are required (or use ssh-ed25519)`)
  if (bits > RSA_MAX_BITS) throw bad(`ssh-rsa key is ${bits} bits; at most ${RSA_MAX_BITS} are allowed`)
}

function checkEd25519 (r: WireReader, sk: boolean): void {
  if (r.bytes().length !== 32) throw bad('ed25519 key must be 32 bytes')
  if (sk) checkApplication(r.string())
  r.end()
}

function checkApplication (app: string): void {
  if (!app.startsWith('ssh:') || app.length > 256) throw bad('security-key application must start with "ssh:"')
}

function checkEcdsa (r: WireReader, type: string, sk: boolean): void {
  const curveName = r.string()
  const curve = ECDSA_CURVES[curveName]
  if (curve === undefined || !type.includes(curveName)) throw bad(`ECDSA key names curve ${JSON.stringify(curveName)}, which does not match ${type}`)
  const q = r.bytes()
  if (q.length !== curve.pointLen || q[0] !== 4) throw bad(`ECDSA key point has the wrong size for ${curveName}`)
  if (sk) checkApplication(r.string())
  r.end()
  const half = (q.length - 1) / 2
  try {
    createPublicKey({ format: 'jwk', key: { kty: 'EC', crv: curve.crv, x: q.subarray(1, 1 + half).toString('base64url'), y: q.subarray(1 + half).toString('base64url') } })
  } catch {
    throw bad(`ECDSA key point is not on curve ${curveName}`)
  }
}

function checkBlob (type: string, blob: Buffer): void {
  const r = new WireReader(blob)
  const inner = r.string()
  if (inner !== type) throw bad(`SSH key says ${JSON.stringify(type)} but its data is a ${JSON.stringify(inner.slice(0, 40))} key`)
  if (type === 'ssh-rsa') checkRsa(r)
  else if (type === 'ssh-ed25519') checkEd25519(r, false)
  else if (type === 'sk-ssh-ed25519@openssh.com') checkEd25519(r, true)
  else checkEcdsa(r, type, type.startsWith('sk-'))
}

function refusePrivate (text: string): void {
  if (/PRIVATE KEY|PuTTY-User-Key-File|^\s*-----BEGIN/i.test(text)) {
    throw bad('this is a PRIVATE key; never share it. Paste the public key instead (the .pub file, e.g. ~/.ssh/id_ed25519.pub)')
  }
}

function decodeBase64 (b64: string): Buffer {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) throw bad('SSH key data is not valid base64')
  const buf = Buffer.from(b64, 'base64')
  if (buf.toString('base64') !== b64) throw bad('SSH key data is not valid base64')
  return buf
}

function checkComment (comment: string): void {
  if (comment.length > COMMENT_MAX) throw bad(`SSH key comment is longer than ${COMMENT_MAX} characters`)
  if (/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u.test(comment)) throw bad('SSH key comment must not contain control characters')
}

/** Parse and validate one public key line; throws InvalidSshKeyError with a human message. */
export function parseSshPublicKey (input: unknown): SshPublicKey {
  if (typeof input !== 'string') throw bad('SSH key must be a string')
  if (Buffer.byteLength(input) > KEY_MAX_BYTES) throw bad(`SSH key is larger than ${KEY_MAX_BYTES} bytes`)
  refusePrivate(input)
  const text = input.trim()
  if (text.includes('\n') || text.includes('\r')) throw bad('one SSH key per entry, on one line')
  const m = /^(\S+)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(text)
  if (m === null) throw bad('not an SSH public key: expected "TYPE BASE64 [comment]"')
  const [, type = '', b64 = '', comment = ''] = m
  if (!KEY_TYPES.includes(type)) {
    throw bad(`unknown or unsupported SSH key type ${JSON.stringify(type.slice(0, 40))}; use one of ${KEY_TYPES.join(', ')}`)
  }
  checkComment(comment)
  const blob = decodeBase64(b64)
  checkBlob(type, blob)
  const fingerprint = `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`
  return { type, blob: b64, comment, fingerprint, line: comment === '' ? `${type} ${b64}` : `${type} ${b64} ${comment}` }
}

/** Validate a user's key list: at most 32 keys, each valid; duplicates (same blob) are dropped. */
export function parseSshPublicKeys (keys: unknown): SshPublicKey[] {
  if (!Array.isArray(keys)) throw bad('SSH keys must be a list')
  if (keys.length > KEYS_MAX) throw bad(`at most ${KEYS_MAX} SSH keys per user`)
  const seen = new Set<string>()
  const out: SshPublicKey[] = []
  keys.forEach((k, i) => {
    let key: SshPublicKey
    try {
      key = parseSshPublicKey(k)
    } catch (err) {
      throw bad(`SSH key #${i + 1}: ${(err as Error).message}`)
    }
    if (!seen.has(key.blob)) { seen.add(key.blob); out.push(key) }
  })
  return out
}
