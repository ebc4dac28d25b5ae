import { generateKeyPairSync } from 'node:crypto'

/** Build real OpenSSH public key lines from Node-generated keys. */

function str (b: Buffer | string): Buffer {
  const buf = typeof b === 'string' ? Buffer.from(b, 'latin1') : b
  const len = Buffer.alloc(4)
  len.writeUInt32BE(buf.length)
  return Buffer.concat([len, buf])
}

function mpint (b64url: string): Buffer {
  let b = Buffer.from(b64url, 'base64url')
  if (((b[0] as number) & 0x80) !== 0) b = Buffer.concat([Buffer.from([0]), b])
  return str(b)
}

export function sshLine (type: string, parts: Buffer[], comment = 'test@center'): string {
  return `${type} ${Buffer.concat([str(type), ...parts]).toString('base64')} ${comment}`
}

export function ed25519Line (comment?: string): string {
  const jwk = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' })
  return sshLine('ssh-ed25519', [str(Buffer.from(jwk.x as string, 'base64url'))], comment)
}

export function rsaLine (bits: number): string {
  const jwk = generateKeyPairSync('rsa', { modulusLength: bits }).publicKey.export({ format: 'jwk' })
  return sshLine('ssh-rsa', [mpint(jwk.e as string), mpint(jwk.n as string)])
}

export function ecdsaLine (curve: 'nistp256' | 'nistp384' | 'nistp521'): string {
  const crv = { nistp256: 'P-256', nistp384: 'P-384', nistp521: 'P-521' }[curve]
  const jwk = generateKeyPairSync('ec', { namedCurve: crv }).publicKey.export({ format: 'jwk' })
  const q = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x as string, 'base64url'), Buffer.from(jwk.y as string, 'base64url')])
  return sshLine(`ecdsa-sha2-${curve}`, [str(curve), str(q)])
}

export function ed25519PrivatePem (): string {
  return generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string
}

export { str }
