/**
 * The peer table and Kademlia routing of issue 5, written against an
 * abstract transport (`KadTransport` / `KadRpcHandler`): the dispatcher
 * carries it between boxes, an in-memory network carries it in tests and in
 * `bench/kademlia/sim.ts`. See docs/kademlia.md.
 */
export { nodeIdOf, idToHex, idEquals, compareDistance, commonPrefixBits, NODE_ID_BYTES } from './id.js'
export {
  createPeerTable, DEFAULT_K, DEFAULT_PING_COUNT,
  type PeerTable, type PeerTableInit, type PeerTableComponents, type PeerTableEvents, type PeerTableStore,
  type PeerTableSnapshot, type SnapshotContact, type PeerContact, type NewContact, type AddResult, type PingRequest
} from './table.js'
export { memoryPeerTableStore, filePeerTableStore } from './store.js'
export {
  createLiveness, DEFAULT_PING_TIMEOUT, DEFAULT_FRESH_FOR,
  type Liveness, type LivenessInit, type LivenessComponents
} from './liveness.js'
export {
  createKademlia, toWire, DEFAULT_ALPHA, DEFAULT_REQUEST_TIMEOUT,
  type Kademlia, type KademliaInit, type KademliaComponents, type KademliaEvents, type HeardVia,
  type LookupOptions, type FindNodeResult, type FindPeerResult
} from './kademlia.js'
export type { LookupStats } from './lookup.js'
export type { KadTransport, KadRpcHandler, KadRequestOptions, WireContact, FindValueAnswer } from './transport.js'
export {
  signPeerRecord, verifyPeerRecord, encodePeerRecord, assertRecordShape, MAX_RECORD_ADDRESSES, MAX_ADDRESS_LENGTH,
  type SignedPeerRecord, type PeerRecordBody, type RecordSigner, type RecordVerifier
} from './record.js'
export { createEd25519Signer, type Ed25519SignerComponents } from './ed25519.js'
export { createMemoryNetwork, type MemoryNetwork, type MemoryNetworkInit } from './memory-transport.js'
export { realTimers, type Timers } from './timers.js'
export {
  RecordSignatureError, StaleRecordError, RecordUuidMismatchError, MalformedRecordError,
  UnknownContactError, FingerprintMismatchError, RequestTimeoutError, SnapshotError, NotStartedError
} from './errors.js'
