import { MalformedFrameError, InvalidJsonError, SchemaError } from '../errors.js'

/**
 * Frames are binary WebSocket messages. The first bytes say what follows
 * (RFC 3's prefix codes); see docs/protocol.md for the byte layout.
 */
export const NEW_PREFIX = 'NEW' + '0'.repeat(64)

export interface FrameHeader {
  v: 1
  from: string
  to: string
  /** GPG+ only: libsignal message type, 2 = whisper, 3 = prekey */
  type?: 2 | 3
  /** GPG+ only: seconds since epoch when the frame was made */
  iat?: number
}

export type Frame =
  | { kind: 'new', envelope: unknown }
  | { kind: 'gpg', header: FrameHeader, body: Uint8Array }
  | { kind: 'gpg+', header: FrameHeader, signature: Uint8Array, ciphertext: Uint8Array, signed: Uint8Array }
  | { kind: 'ok', body: unknown }
  | { kind: 'err', body: { code: string, message: string } }

const enc = new TextEncoder()
const MAX_HEADER = 1024
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** A peer address as it travels in join and introduction messages: HOST:PORT, IPv6 in brackets. */
export const ADDRESS = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]{1,253}):\d{1,5}$/

export function isUuid (s: unknown): s is string {
  return typeof s === 'string' && UUID.test(s)
}

function u32 (n: number): Uint8Array {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}

export function encodeNew (envelope: unknown): Buffer {
  return Buffer.concat([enc.encode(NEW_PREFIX), enc.encode(JSON.stringify(envelope))])
}

export function encodeGpg (header: FrameHeader, body: Uint8Array): Buffer {
  const h = enc.encode(JSON.stringify(header))
  return Buffer.concat([enc.encode('GPG'), u32(h.length), h, body])
}

/** The bytes a GPG+ signature covers: everything but the signature block. */
export function gpgPlusSigned (header: FrameHeader, ciphertext: Uint8Array): Buffer {
  const h = enc.encode(JSON.stringify(header))
  return Buffer.concat([enc.encode('GPG+'), u32(h.length), h, ciphertext])
}

/** Splice a detached signature into the signed bytes: `GPG+ | hlen | header | slen | sig | ciphertext`. */
export function encodeGpgPlus (signed: Uint8Array, signature: Uint8Array): Buffer {
  const hlen = Buffer.from(signed.buffer, signed.byteOffset, signed.byteLength).readUInt32BE(4)
  const cut = 8 + hlen
  return Buffer.concat([signed.subarray(0, cut), u32(signature.length), signature, signed.subarray(cut)])
}

export function encodeOk (body: unknown): Buffer {
  return Buffer.concat([enc.encode('OK'), enc.encode(JSON.stringify(body))])
}

export function encodeErr (code: string, message: string): Buffer {
  return Buffer.concat([enc.encode('ERR'), enc.encode(JSON.stringify({ code, message }))])
}

export function decodeFrame (buf: Buffer): Frame {
  if (startsWith(buf, 'GPG+')) return decodeGpgPlus(buf)
  if (startsWith(buf, 'GPG')) {
    const { header, rest } = readHeader(buf, 3)
    return { kind: 'gpg', header, body: rest }
  }
  if (startsWith(buf, NEW_PREFIX)) return { kind: 'new', envelope: parseJson(buf.subarray(NEW_PREFIX.length), 'new-peer-server') }
  if (startsWith(buf, 'ERR')) return { kind: 'err', body: parseErr(buf.subarray(3)) }
  if (startsWith(buf, 'OK')) return { kind: 'ok', body: parseJson(buf.subarray(2), 'reply') }
  if (startsWith(buf, 'NEW')) throw new MalformedFrameError('NEW frame must carry 64 zeros after the prefix')
  throw new MalformedFrameError(`unknown frame prefix ${JSON.stringify(buf.subarray(0, 4).toString('latin1'))}`)
}

function decodeGpgPlus (buf: Buffer): Frame {
  const { header, rest, end } = readHeader(buf, 4)
  if (header.type !== 2 && header.type !== 3) throw new SchemaError('GPG+ header.type must be 2 or 3')
  if (!Number.isInteger(header.iat)) throw new SchemaError('GPG+ header.iat must be an integer')
  if (rest.length < 4) throw new MalformedFrameError('GPG+ frame is truncated before the signature length')
  const slen = Buffer.from(rest.buffer, rest.byteOffset, rest.byteLength).readUInt32BE(0)
  if (slen === 0 || slen > 4096 || rest.length < 4 + slen + 1) throw new MalformedFrameError(`GPG+ signature length ${slen} is out of range`)
  const signature = rest.subarray(4, 4 + slen)
  const ciphertext = rest.subarray(4 + slen)
  const signed = Buffer.concat([buf.subarray(0, end), ciphertext])
  return { kind: 'gpg+', header, signature, ciphertext, signed }
}

function readHeader (buf: Buffer, at: number): { header: FrameHeader, rest: Uint8Array, end: number } {
  if (buf.length < at + 4) throw new MalformedFrameError('frame is truncated before the header length')
  const hlen = buf.readUInt32BE(at)
  if (hlen === 0 || hlen > MAX_HEADER || buf.length < at + 4 + hlen) throw new MalformedFrameError(`header length ${hlen} is out of range`)
  const end = at + 4 + hlen
  const header = parseJson(buf.subarray(at + 4, end), 'frame header') as FrameHeader
  checkHeader(header)
  return { header, rest: buf.subarray(end), end }
}

function checkHeader (h: FrameHeader): void {
  if (typeof h !== 'object' || h === null || Array.isArray(h)) throw new SchemaError('frame header must be a JSON object')
  if (h.v !== 1) throw new SchemaError(`frame header.v must be 1, got ${JSON.stringify(h.v)}`)
  if (!isUuid(h.from)) throw new SchemaError('frame header.from must be a lowercase UUID')
  if (!isUuid(h.to)) throw new SchemaError('frame header.to must be a lowercase UUID')
}

function parseErr (b: Uint8Array): { code: string, message: string } {
  const o = parseJson(b, 'error reply') as { code?: unknown, message?: unknown }
  return { code: String(o?.code ?? 'unknown'), message: String(o?.message ?? '') }
}

export function parseJson (b: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8'))
  } catch (err) {
    throw new InvalidJsonError(`${what} is not valid JSON: ${(err as Error).message}`, { cause: err })
  }
}

function startsWith (buf: Buffer, prefix: string): boolean {
  return buf.length >= prefix.length && buf.toString('latin1', 0, prefix.length) === prefix
}
