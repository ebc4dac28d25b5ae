import { ExpiredError, FromTheFutureError, SchemaError, TtlTooLongError, WrongRecipientError, WrongSenderError } from '../errors.js'
import { isUuid } from './frame.js'

/** RFC 3's event envelope. `iat`/`exp` are seconds since the epoch (JWT NumericDate). */
export interface Envelope {
  name: string
  meta: { from: string, to: string, iat: number, exp: number }
  data: unknown
}

/** `meta.to` for an event meant for every peer. */
export const BROADCAST = '*'

/** kebab-case, optionally prefixed by a service name and a dot: `hashtags.publish`. */
export const EVENT_NAME = /^(?:[a-z][a-z0-9-]{0,31}\.)?[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/
export const MAX_EVENT_NAME = 64

export function isEventName (s: unknown): s is string {
  return typeof s === 'string' && s.length <= MAX_EVENT_NAME && EVENT_NAME.test(s)
}

export interface EnvelopeLimits {
  clockSkewSeconds: number
  maxTtlSeconds: number
}

/** Shape only: field presence and types. */
export function checkShape (v: unknown): Envelope {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SchemaError('envelope must be a JSON object')
  const e = v as Record<string, unknown>
  const extra = Object.keys(e).filter((k) => k !== 'name' && k !== 'meta' && k !== 'data')
  if (extra.length > 0) throw new SchemaError(`envelope has unknown field(s): ${extra.join(', ')}`)
  if (!isEventName(e.name)) throw new SchemaError('envelope.name must be a kebab-case event name (optionally service-prefixed), at most 64 characters')
  const m = e.meta as Record<string, unknown> | undefined
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new SchemaError('envelope.meta must be an object')
  if (!isUuid(m.from)) throw new SchemaError('envelope.meta.from must be a lowercase UUID')
  if (!isUuid(m.to) && m.to !== BROADCAST) throw new SchemaError('envelope.meta.to must be a lowercase UUID or "*"')
  if (!Number.isSafeInteger(m.iat)) throw new SchemaError('envelope.meta.iat must be an integer (seconds since the epoch)')
  if (!Number.isSafeInteger(m.exp)) throw new SchemaError('envelope.meta.exp must be an integer (seconds since the epoch)')
  if (!('data' in e)) throw new SchemaError('envelope.data is missing')
  return v as Envelope
}

/**
 * Every check RFC 3 asks for before an event is acted on: it came from the peer
 * that signed the frame, it is for us, and it is fresh.
 */
export function checkEnvelope (v: unknown, ctx: { sender: string, self: string, now: number, broadcast?: boolean }, lim: EnvelopeLimits): Envelope {
  const env = checkShape(v)
  const { meta } = env
  if (meta.from !== ctx.sender) throw new WrongSenderError(`meta.from ${meta.from} is not the peer that signed the frame (${ctx.sender})`)
  // control messages (GPG, NEW) are for one peer only; events may be for all
  const forAll = meta.to === BROADCAST && ctx.broadcast !== false
  if (meta.to !== ctx.self && !forAll) throw new WrongRecipientError(`meta.to ${meta.to} is not this peer (${ctx.self})`)
  if (meta.iat > ctx.now + lim.clockSkewSeconds) throw new FromTheFutureError(`meta.iat is ${meta.iat - ctx.now} s in the future (allowed skew ${lim.clockSkewSeconds} s)`)
  if (meta.exp <= ctx.now) throw new ExpiredError(`event expired ${ctx.now - meta.exp} s ago`)
  if (meta.exp - meta.iat > lim.maxTtlSeconds) throw new TtlTooLongError(`exp - iat is ${meta.exp - meta.iat} s, more than the allowed ${lim.maxTtlSeconds} s`)
  return env
}

/**
 * Tests only: shifts this process's idea of the time by a fixed offset, so a
 * test can give one real centerd a skewed clock (a real skew cannot be made
 * on one machine). Set by centerd from CENTER_TEST_CLOCK_OFFSET_SECONDS.
 */
let testClockOffsetMs = 0
export function setTestClockOffset (seconds: number): void {
  if (!Number.isFinite(seconds)) throw new RangeError(`clock offset must be a number of seconds, got ${String(seconds)}`)
  testClockOffsetMs = seconds * 1000
}

/** This peer's wall clock in ms: what it stamps on frames and events. */
export const nowMs = (): number => Date.now() + testClockOffsetMs
export const nowSeconds = (): number => Math.floor(nowMs() / 1000)
