import { defineError } from '../errors.js'

/** A tree (or a write) would take a user past their quota. */
export const QuotaExceededError = defineError('QuotaExceededError', 'over-quota')
/** A quota backend command failed, or the backend cannot work on this box. */
export const QuotaBackendError = defineError('QuotaBackendError', 'quota-backend')
/** A user name, uid or path given to a backend is not one we accept. */
export const BadQuotaArgumentError = defineError('BadQuotaArgumentError', 'bad-request')
