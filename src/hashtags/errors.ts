/**
 * Named errors of the hashtag layer. Every refusal is one of these, with a
 * stable `code` for the wire and for logs; compare by `name` or `code`,
 * never by message text.
 */

export class HashtagError extends Error {
  readonly code: string

  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }

  toJSON (): { name: string, code: string, message: string } {
    return { name: this.name, code: this.code, message: this.message }
  }
}

type HashtagErrorClass = new (message: string, options?: { cause?: unknown }) => HashtagError

function define (name: string, code: string): HashtagErrorClass {
  const cls = class extends HashtagError {
    constructor (message: string, options?: { cause?: unknown }) {
      super(code, message, options)
    }
  }
  Object.defineProperty(cls, 'name', { value: name })
  Object.defineProperty(cls.prototype, 'name', { value: name, writable: true })
  return cls
}

// identifiers
export const InvalidAddressError = define('InvalidAddressError', 'invalid-address')
export const InvalidDomainError = define('InvalidDomainError', 'invalid-domain')
export const InvalidVserverError = define('InvalidVserverError', 'invalid-vserver')
export const InvalidTagError = define('InvalidTagError', 'invalid-tag')
export const TagTooLongError = define('TagTooLongError', 'tag-too-long')
export const MalformedIdError = define('MalformedIdError', 'malformed-id')
export const ForgedNodeIdError = define('ForgedNodeIdError', 'forged-node-id')
export const InvalidPostUriError = define('InvalidPostUriError', 'invalid-post-uri')
export const MalformedMessageError = define('MalformedMessageError', 'malformed-message')

// routing and transport
export const NodeUnreachableError = define('NodeUnreachableError', 'unreachable')
export const LookupLoopError = define('LookupLoopError', 'lookup-loop')
export const LookupFailedError = define('LookupFailedError', 'lookup-failed')
export const NotJoinedError = define('NotJoinedError', 'not-joined')
export const UnknownMessageError = define('UnknownMessageError', 'unknown-message')

// roles
export const OverloadedError = define('OverloadedError', 'overloaded')
export const InvalidOverloadTokenError = define('InvalidOverloadTokenError', 'invalid-overload-token')
export const WrongPartitionError = define('WrongPartitionError', 'wrong-partition')
export const NotResponsibleError = define('NotResponsibleError', 'not-responsible')
export const InvalidRedundancyError = define('InvalidRedundancyError', 'invalid-redundancy')
export const InvalidCursorError = define('InvalidCursorError', 'invalid-cursor')

/** An overload refusal that carries the relay's signed token (§7.1). */
export class OverloadRefusal extends HashtagError {
  readonly token: unknown
  readonly redundancy: number

  constructor (message: string, token: unknown, redundancy: number) {
    super('overloaded', message)
    this.token = token
    this.redundancy = redundancy
  }
}
Object.defineProperty(OverloadRefusal.prototype, 'name', { value: 'OverloadRefusal', writable: true })

/** Wire form of an error, so a refusal crosses the transport with its code. */
export function errorFromWire (wire: { name?: unknown, code?: unknown, message?: unknown, token?: unknown, redundancy?: unknown }): HashtagError {
  const code = typeof wire.code === 'string' ? wire.code : 'internal'
  const message = typeof wire.message === 'string' ? wire.message : 'remote error'
  if (code === 'overloaded' && wire.token !== undefined) {
    return new OverloadRefusal(message, wire.token, typeof wire.redundancy === 'number' ? wire.redundancy : 0)
  }
  const err = new HashtagError(code, message)
  if (typeof wire.name === 'string') Object.defineProperty(err, 'name', { value: wire.name })
  return err
}

export function errorToWire (err: unknown): Record<string, unknown> {
  if (err instanceof OverloadRefusal) {
    return { name: err.name, code: err.code, message: err.message, token: err.token, redundancy: err.redundancy }
  }
  if (err instanceof HashtagError) return { name: err.name, code: err.code, message: err.message }
  return { name: 'HashtagError', code: 'internal', message: err instanceof Error ? err.message : String(err) }
}
