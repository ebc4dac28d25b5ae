import { SchemaError } from '../errors.js'

/** The decrypted body of a GPG+ frame. See docs/protocol.md, "Frame payload". */
export interface Payload {
  hello?: { ack: number }
  /** the frame covers sequence numbers (base, upTo]; missing ones expired at the sender */
  base?: number
  upTo?: number
  events?: Array<{ seq: number, env: unknown }>
  /** "resend everything after this": the receiver saw a gap */
  rewind?: number
  ack?: number
  ping?: string
  pong?: string
}

/** Shape checks of a decrypted payload; envelopes are checked one by one later. */
export function checkPayload (v: unknown): Payload {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SchemaError('frame payload must be a JSON object')
  const p = v as Record<string, unknown>
  if (p.events !== undefined) {
    if (!Array.isArray(p.events)) throw new SchemaError('payload.events must be an array')
    let last = 0
    for (const e of p.events as Array<Record<string, unknown>>) {
      if (typeof e !== 'object' || e === null || !Number.isSafeInteger(e.seq) || (e.seq as number) < 1) throw new SchemaError('payload.events[].seq must be a positive integer')
      if ((e.seq as number) <= last) throw new SchemaError('payload.events must be in increasing seq order')
      last = e.seq as number
    }
    const events = p.events as Array<{ seq: number }>
    if (events.length > 0 && (typeof p.base !== 'number' || typeof p.upTo !== 'number' || (events[0] as { seq: number }).seq <= p.base || last > p.upTo)) {
      throw new SchemaError('payload.base and payload.upTo must bracket the events\' seq numbers')
    }
  }
  for (const k of ['ack', 'base', 'upTo', 'rewind'] as const) if (p[k] !== undefined && (!Number.isSafeInteger(p[k]) || (p[k] as number) < 0)) throw new SchemaError(`payload.${k} must be a non-negative integer`)
  const hello = p.hello as { ack?: unknown } | undefined
  if (hello !== undefined && (typeof hello !== 'object' || hello === null || !Number.isSafeInteger(hello.ack))) throw new SchemaError('payload.hello.ack must be an integer')
  for (const k of ['ping', 'pong'] as const) if (p[k] !== undefined && (typeof p[k] !== 'string' || (p[k] as string).length > 64)) throw new SchemaError(`payload.${k} must be a short string`)
  return p as Payload
}
