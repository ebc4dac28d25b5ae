import { isAbsolute, normalize } from 'node:path'
import { BadQuotaArgumentError } from './errors.js'

/**
 * Names as useradd accepts them by default on Debian (NAME_REGEX), which is
 * also what the accounts service allows. No dots, slashes or leading dashes,
 * so a name is always one safe path component and never an option.
 */
const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/

export function assertUserName (name: string): void {
  if (typeof name !== 'string' || !USER_NAME.test(name)) {
    throw new BadQuotaArgumentError(`bad user name ${JSON.stringify(name)}: must match ${String(USER_NAME)}`)
  }
}

/** A uid/gid for a user tree: an integer, never root (0), below 2^31. */
export function assertId (what: 'uid' | 'gid', id: number): void {
  if (!Number.isSafeInteger(id) || id <= 0 || id >= 2 ** 31) {
    throw new BadQuotaArgumentError(`bad ${what} ${String(id)}: must be an integer in 1..2^31-1`)
  }
}

export function assertLimit (limitBytes: number): void {
  if (!Number.isSafeInteger(limitBytes) || limitBytes < 0) {
    throw new BadQuotaArgumentError(`bad quota limit ${String(limitBytes)}: must be a whole number of bytes >= 0`)
  }
}

/**
 * An absolute, already-normal path that is safe to hand to a command as one
 * argument: no NUL, no `..`, no whitespace, quotes or backslashes (xfs_quota
 * and rsync's -e split their own argument strings on those).
 */
export function assertSafePath (p: string): void {
  if (typeof p !== 'string' || !isAbsolute(p) || normalize(p) !== p || p.split('/').includes('..') ||
      /[\0\s'"\\]/.test(p) || (p.length > 1 && p.endsWith('/'))) {
    throw new BadQuotaArgumentError(`unsafe path ${JSON.stringify(p)}: must be absolute, normal, without .., whitespace, quotes or backslashes`)
  }
}
