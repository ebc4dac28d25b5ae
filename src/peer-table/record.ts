import {
  MalformedRecordError,
  RecordSignatureError,
  RecordUuidMismatchError,
  StaleRecordError
} from './errors.js'

/** What a peer says about itself: where it can be reached, as of which version. */
export interface PeerRecordBody {
  uuid: string
  /** reachable addresses, e.g. `wss://tilde.example:7777`; order is the peer's preference */
  addresses: string[]
  /** strictly increasing per peer; a record only replaces one with a lower seq */
  seq: number
  /** issued-at, milliseconds since the epoch (informational; ordering is by seq) */
  iat: number
}

/** A `PeerRecordBody` plus the peer's signature over `encodePeerRecord(body)`, base64. */
export interface SignedPeerRecord extends PeerRecordBody {
  signature: string
}

/**
 * Signs and verifies peer records. The dispatcher plugs its OpenPGP identity
 * in here (detached signatures, key looked up by uuid); tests use Ed25519.
 * Both methods may be async because OpenPGP is.
 */
export interface RecordSigner {
  /** sign with the local peer's key */
  sign: (bytes: Uint8Array) => Uint8Array | Promise<Uint8Array>
  /** true when `sig` is `uuid`'s signature over `bytes`; false (not throw) when it is not or the key is unknown */
  verify: (uuid: string, bytes: Uint8Array, sig: Uint8Array) => boolean | Promise<boolean>
}

/** The verifying half, for components that never sign. */
export type RecordVerifier = Pick<RecordSigner, 'verify'>

/** Limits that keep a hostile record from being expensive to hold or forward. */
export const MAX_RECORD_ADDRESSES = 16
export const MAX_ADDRESS_LENGTH = 256

/**
 * Domain-separation tag: a signature over a peer record can never be replayed
 * as a signature over some other structure signed by the same key.
 */
const RECORD_TAG = 'center-peer-record/1'

/**
 * The exact bytes that are signed: a JSON array with a fixed field order, so
 * encoding never depends on object key order or on extra fields.
 */
export function encodePeerRecord (body: PeerRecordBody): Uint8Array {
  const text = JSON.stringify([RECORD_TAG, body.uuid.toLowerCase(), body.addresses, body.seq, body.iat])
  return new TextEncoder().encode(text)
}

/** Throws `MalformedRecordError` unless `r` has the shape of a signed record. */
export function assertRecordShape (r: unknown): asserts r is SignedPeerRecord {
  const rec = r as Partial<SignedPeerRecord> | null
  if (rec === null || typeof rec !== 'object') throw new MalformedRecordError('peer record is not an object')
  if (typeof rec.uuid !== 'string' || rec.uuid.length === 0) throw new MalformedRecordError('peer record has no uuid')
  if (!Number.isSafeInteger(rec.seq) || (rec.seq as number) < 0) throw new MalformedRecordError('peer record seq must be a non-negative integer')
  if (!Number.isSafeInteger(rec.iat)) throw new MalformedRecordError('peer record iat must be an integer')
  if (typeof rec.signature !== 'string') throw new MalformedRecordError('peer record has no signature')
  assertAddresses(rec.addresses)
}

function assertAddresses (a: unknown): void {
  if (!Array.isArray(a) || a.length > MAX_RECORD_ADDRESSES) {
    throw new MalformedRecordError(`peer record addresses must be an array of at most ${MAX_RECORD_ADDRESSES}`)
  }
  for (const x of a) {
    if (typeof x !== 'string' || x.length === 0 || x.length > MAX_ADDRESS_LENGTH) {
      throw new MalformedRecordError('peer record address must be a non-empty string of at most 256 chars')
    }
  }
}

/** Sign a record about the local peer. */
export async function signPeerRecord (signer: Pick<RecordSigner, 'sign'>, body: PeerRecordBody): Promise<SignedPeerRecord> {
  const clean: PeerRecordBody = { uuid: body.uuid.toLowerCase(), addresses: [...body.addresses], seq: body.seq, iat: body.iat }
  assertRecordShape({ ...clean, signature: '' })
  const sig = await signer.sign(encodePeerRecord(clean))
  return { ...clean, signature: Buffer.from(sig).toString('base64') }
}

/**
 * Check that `record` is well-formed, speaks for `expectedUuid`, and carries
 * that peer's valid signature. Throws the typed refusal otherwise.
 */
export async function verifyPeerRecord (verifier: RecordVerifier, record: unknown, expectedUuid: string): Promise<SignedPeerRecord> {
  assertRecordShape(record)
  if (record.uuid.toLowerCase() !== expectedUuid.toLowerCase()) {
    throw new RecordUuidMismatchError(`peer record for ${record.uuid} offered for ${expectedUuid}`)
  }
  const ok = await verifier.verify(expectedUuid.toLowerCase(), encodePeerRecord(record), Buffer.from(record.signature, 'base64'))
  if (!ok) throw new RecordSignatureError(`peer record signature for ${record.uuid} does not verify`)
  return record
}

/** Throws `StaleRecordError` unless `next` is strictly newer than `held`. */
export function assertNewer (held: SignedPeerRecord | undefined, next: SignedPeerRecord): void {
  if (held !== undefined && next.seq <= held.seq) {
    throw new StaleRecordError(`peer record seq ${next.seq} is not above held seq ${held.seq}`)
  }
}
