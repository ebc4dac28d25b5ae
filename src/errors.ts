/**
 * The error taxonomy. Every refusal the dispatcher makes is one of these
 * classes, with a stable `code` that goes on the wire and into logs and
 * metrics. Compare errors by `name`/`code`, never by message text.
 */

export interface CenterErrorOptions {
  cause?: unknown
  /** extra structured fields that are safe to log (never secrets) */
  detail?: Record<string, unknown>
}

export class CenterError extends Error {
  /** stable machine-readable code, e.g. `bad-signature` */
  readonly code: string = 'internal'
  readonly detail: Record<string, unknown> | undefined

  constructor (message: string, opts: CenterErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.detail = opts.detail
  }

  toJSON (): { name: string, code: string, message: string } {
    return { name: this.name, code: this.code, message: this.message }
  }
}

export type CenterErrorClass = new (message?: string, opts?: CenterErrorOptions) => CenterError

/**
 * A named error class with a stable code: how every module makes its own
 * (`export const XError = defineError('XError', 'x')`).
 */
export function defineError (name: string, code: string, defaultMessage: string = name): CenterErrorClass {
  const cls = class extends CenterError {
    override readonly code = code
    constructor (message: string = defaultMessage, opts?: CenterErrorOptions) {
      super(message, opts)
    }
  }
  Object.defineProperty(cls, 'name', { value: name })
  Object.defineProperty(cls.prototype, 'name', { value: name, writable: true })
  return cls
}

// configuration and boot
export const ConfigError = defineError('ConfigError', 'config')
export const IdentityError = defineError('IdentityError', 'identity')
export const MigrationError = defineError('MigrationError', 'migration')
export const NotRunningError = defineError('NotRunningError', 'not-running')

// refusals of frames and envelopes from peers
export const MalformedFrameError = defineError('MalformedFrameError', 'malformed-frame')
export const FrameTooLargeError = defineError('FrameTooLargeError', 'frame-too-large')
export const InvalidJsonError = defineError('InvalidJsonError', 'invalid-json')
export const SchemaError = defineError('SchemaError', 'schema')
export const BadSignatureError = defineError('BadSignatureError', 'bad-signature')
export const UnknownPeerError = defineError('UnknownPeerError', 'unknown-peer')
export const DecryptError = defineError('DecryptError', 'decrypt')
export const NoSessionError = defineError('NoSessionError', 'no-session')
export const WrongSenderError = defineError('WrongSenderError', 'wrong-sender')
export const WrongRecipientError = defineError('WrongRecipientError', 'wrong-recipient')
export const ExpiredError = defineError('ExpiredError', 'expired')
export const FromTheFutureError = defineError('FromTheFutureError', 'from-the-future')
export const TtlTooLongError = defineError('TtlTooLongError', 'ttl-too-long')
export const ReplayError = defineError('ReplayError', 'replay')
export const RateLimitedError = defineError('RateLimitedError', 'rate-limited')
export const BadSecretError = defineError('BadSecretError', 'bad-secret')
export const BannedPeerError = defineError('BannedPeerError', 'banned-peer')
export const SequenceGapError = defineError('SequenceGapError', 'sequence-gap')

// local services and the admin socket
export const BadTokenError = defineError('BadTokenError', 'bad-token')
export const NotGrantedError = defineError('NotGrantedError', 'not-granted')
export const BadRequestError = defineError('BadRequestError', 'bad-request')
export const NotFoundError = defineError('NotFoundError', 'not-found')
export const ConflictError = defineError('ConflictError', 'conflict')

/** Errors that mean "the other side sent something wrong", as opposed to our bugs. */
export function isRefusal (err: unknown): err is CenterError {
  return err instanceof CenterError && err.code !== 'internal'
}

/** Normalise anything thrown into a wire-safe error body; internals are hidden. */
export function toWireError (err: unknown): { name: string, code: string, message: string } {
  if (err instanceof CenterError) return err.toJSON()
  return { name: 'InternalError', code: 'internal', message: 'internal error' }
}
