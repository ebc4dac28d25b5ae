import { BadRequestError } from '../errors.js'
import type { Envelope } from '../wire/envelope.js'
import { BROADCAST, isEventName } from '../wire/envelope.js'
import { isUuid } from '../wire/frame.js'

/**
 * The services socket protocol, one JSON object per line. docs/sdk.md is
 * the specification; these types are its shape in code.
 */

export type RequestId = string | number
export type Meta = Envelope['meta']
export interface WireError { name: string, code: string, message: string }

export interface HelloMsg { op: 'hello', token: string, resumeAfter?: number }
export interface SubscribeMsg { op: 'subscribe', id: RequestId, names: string[] }
export interface AckMsg { op: 'ack', upTo: number }
export interface SendMsg { op: 'send', id: RequestId, name: string, to: string, data: unknown, ttl?: number, nonce?: string }
export type ClientMsg = HelloMsg | SubscribeMsg | AckMsg | SendMsg

export interface WelcomeMsg { op: 'welcome', service: string, peer: string, receive: string[], send: string[] }
export interface SubscribedMsg { op: 'subscribed', id: RequestId, names: string[] }
export interface EventMsg { op: 'event', id: number, name: string, meta: Meta, data: unknown }
export interface SentMsg { op: 'sent', id: RequestId, meta: Meta }
export interface GrantsMsg { op: 'grants', receive: string[], send: string[] }
export interface ErrorMsg { op: 'error', id?: RequestId, error: WireError }
export type ServerMsg = WelcomeMsg | SubscribedMsg | EventMsg | SentMsg | GrantsMsg | ErrorMsg

export const MAX_NONCE = 128
export const MAX_NAMES_PER_SUBSCRIBE = 256

type Obj = Record<string, unknown>

export function opOf (msg: unknown): string | undefined {
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return undefined
  const op = (msg as Obj).op
  return typeof op === 'string' ? op : undefined
}

/** The request id, if the message has a usable one: errors echo it back. */
export function idOf (msg: unknown): RequestId | undefined {
  const id = (msg as Obj | null)?.id
  return isRequestId(id) ? id : undefined
}

function isRequestId (v: unknown): v is RequestId {
  return (typeof v === 'string' && v.length <= 64) || Number.isSafeInteger(v)
}

function isCursor (v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0
}

function requireId (m: Obj): RequestId {
  if (!isRequestId(m.id)) throw new BadRequestError(`${String(m.op)}: id must be a string (at most 64 characters) or an integer`)
  return m.id
}

export function parseHello (m: Obj): HelloMsg {
  if (typeof m.token !== 'string') throw new BadRequestError('hello: token must be a string')
  if (m.resumeAfter !== undefined && !isCursor(m.resumeAfter)) throw new BadRequestError('hello: resumeAfter must be a non-negative integer')
  return { op: 'hello', token: m.token, resumeAfter: m.resumeAfter }
}

export function parseSubscribe (m: Obj): SubscribeMsg {
  const id = requireId(m)
  const names = m.names
  if (!Array.isArray(names) || names.length === 0 || names.length > MAX_NAMES_PER_SUBSCRIBE) {
    throw new BadRequestError(`subscribe: names must be a list of 1 to ${MAX_NAMES_PER_SUBSCRIBE} event names`)
  }
  const bad = names.find((n) => !isEventName(n))
  if (bad !== undefined) throw new BadRequestError(`subscribe: ${JSON.stringify(bad)} is not an event name`)
  return { op: 'subscribe', id, names: [...new Set(names as string[])] }
}

export function parseAck (m: Obj): AckMsg {
  if (!isCursor(m.upTo)) throw new BadRequestError('ack: upTo must be a non-negative integer')
  return { op: 'ack', upTo: m.upTo }
}

export function parseSend (m: Obj): SendMsg {
  const id = requireId(m)
  if (!isEventName(m.name)) throw new BadRequestError('send: name must be an event name')
  const to = m.to ?? BROADCAST
  if (to !== BROADCAST && !isUuid(to)) throw new BadRequestError('send: to must be a lowercase peer UUID or "*"')
  if (m.ttl !== undefined && !(Number.isSafeInteger(m.ttl) && (m.ttl as number) > 0)) throw new BadRequestError('send: ttl must be a positive integer (seconds)')
  if (m.nonce !== undefined && !(typeof m.nonce === 'string' && m.nonce.length > 0 && m.nonce.length <= MAX_NONCE)) {
    throw new BadRequestError(`send: nonce must be a string of 1 to ${MAX_NONCE} characters`)
  }
  const out: SendMsg = { op: 'send', id, name: m.name, to: to as string, data: m.data ?? null }
  if (m.ttl !== undefined) out.ttl = m.ttl as number
  if (m.nonce !== undefined) out.nonce = m.nonce as string
  return out
}
