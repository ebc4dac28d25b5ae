import { defineError } from '../errors.js'

/**
 * Refusals and failures of the peer table and Kademlia layer. They are
 * `CenterError`s, so `isRefusal()` and `toWireError()` work on them;
 * compare by `name`/`code`, never by message.
 */

/** A peer record whose signature does not verify against the claimed peer's key. */
export const RecordSignatureError = defineError('RecordSignatureError', 'bad-record-signature', 'peer record signature does not verify')
/** A peer record whose seq is not higher than the one we already hold. */
export const StaleRecordError = defineError('StaleRecordError', 'stale-record', 'peer record is not newer than the one held')
/** A peer record that speaks for a different uuid than the contact it was offered for. */
export const RecordUuidMismatchError = defineError('RecordUuidMismatchError', 'record-uuid-mismatch', 'peer record is for another peer')
/** A peer record that is structurally wrong (missing fields, bad seq, too many addresses). */
export const MalformedRecordError = defineError('MalformedRecordError', 'malformed-record', 'peer record is malformed')
/** An operation on a peer the table does not hold (it was never admitted, or was evicted). */
export const UnknownContactError = defineError('UnknownContactError', 'unknown-contact', 'peer is not in the peer table')
/** An admitted uuid offered again with a different key fingerprint: re-admission is the caller's call. */
export const FingerprintMismatchError = defineError('FingerprintMismatchError', 'fingerprint-mismatch', 'peer offered with a different key fingerprint')
/** One Kademlia request that got no answer in time. */
export const RequestTimeoutError = defineError('RequestTimeoutError', 'timeout', 'peer did not answer in time')
/** A snapshot that cannot be restored (unknown version, wrong local peer). */
export const SnapshotError = defineError('SnapshotError', 'bad-snapshot', 'peer table snapshot cannot be restored')
/** The component was used before `start()` or after `stop()`. */
export const NotStartedError = defineError('NotStartedError', 'not-running', 'component is not running')
