import { defineError } from '../errors.js'

/** An incoming tree holds entries that must never arrive (devices, set-uid, escaping links...). */
export const ForbiddenEntryError = defineError('ForbiddenEntryError', 'forbidden-entry')
/** A path would lead outside the tree it belongs to. */
export const UnsafePathError = defineError('UnsafePathError', 'unsafe-path')
/** SSH_ORIGINAL_COMMAND is not an rsync receive into /center we allow. */
export const ForcedCommandError = defineError('ForcedCommandError', 'forced-command')
/** A staged file changed between the check and the apply. */
export const StagingChangedError = defineError('StagingChangedError', 'staging-changed')
/** A push arrived without a signed sync-push event from that peer for that tree. */
export const SyncNotAuthorizedError = defineError('SyncNotAuthorizedError', 'sync-not-authorized')
/** A tree cannot be synced (no such tree here yet, not a directory, a push already running...). */
export const SyncRefusedError = defineError('SyncRefusedError', 'sync-refused')
/** An ssh/rsync push to a peer failed. */
export const SyncPushError = defineError('SyncPushError', 'sync-push-failed')
