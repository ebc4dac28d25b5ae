/**
 * Public surface of the hashtag DHT layer: types and factories only.
 * The simulator helpers (sim/) are not part of it.
 */
export * from './errors.js'
export {
  M, RING_SIZE, MAX_TAG_BYTES, normaliseTag, tagKey, nodeId, registeredDomain, parseIPv6, subnet64,
  idToHex, parseId, inOpen, inHalfOpen, ringDistance, type Id, type NodeIdInput
} from './ids.js'
export { createIdVerifier, addressOf, type PeerInfo, type Peer, type IdVerifier } from './peer.js'
export { createMemoryTransport, type Transport, type Message, type Source, type Handler, type MemoryTransport } from './transport.js'
export { createChordNode, type ChordNode, type ChordNodeInit, type ChordNodeComponents, type RangeData, type LookupResult } from './ring.js'
export { createStorageRole, HistoryStore, type StorageRole, type StorageInit, type StorageComponents, type StoredPost } from './storage.js'
export { createRelayRole, type RelayRole, type RelayInit, type RelayComponents } from './relay.js'
export { createHashtagClient, createInbox, type HashtagClient, type Inbox, type InboxInit, type InboxComponents } from './client.js'
export {
  DEFAULT_REDUNDANCY, replicaLocations, partitions, createSigner, createKeyDirectory, signOverloadToken,
  verifyOverloadToken, validatePostUri, type OverloadToken, type KeyDirectory, type Signer
} from './redundancy.js'
export { merkleRoot, merkleProof, verifyProof, majorityRoot } from './merkle.js'
export { createKChoices, KeySpace, posOf, type KChoices, type KChoicesInit, type BalanceNode } from './balance.js'
export { systemClock, createManualClock, type Clock, type ManualClock } from './clock.js'
export { createRandom, type Random } from './random.js'
