import { BadRequestError, ConflictError, type CenterError, type CenterErrorOptions } from '../errors.js'

/**
 * Named refusals of the accounts subsystem. They keep the generic `code` of
 * their parent (`bad-request` / `conflict`), so the wire mapping stays one
 * table, and add a precise `name` for logs and tests.
 */

type ErrorClass = new (message: string, opts?: CenterErrorOptions) => CenterError

function named (name: string, parent: ErrorClass): ErrorClass {
  const cls = class extends parent {}
  Object.defineProperty(cls, 'name', { value: name })
  Object.defineProperty(cls.prototype, 'name', { value: name, writable: true })
  return cls
}

export const InvalidUsernameError = named('InvalidUsernameError', BadRequestError)
export const ReservedUsernameError = named('ReservedUsernameError', BadRequestError)
export const InvalidGecosError = named('InvalidGecosError', BadRequestError)
export const InvalidShellError = named('InvalidShellError', BadRequestError)
export const InvalidSshKeyError = named('InvalidSshKeyError', BadRequestError)
export const UidCollisionError = named('UidCollisionError', ConflictError)
