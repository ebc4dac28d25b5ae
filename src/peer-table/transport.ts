import type { SignedPeerRecord } from './record.js'

/**
 * A peer as it travels in Kademlia messages. There is no node id: receivers
 * compute it from the uuid (`nodeIdOf`), so a peer cannot claim a position.
 */
export interface WireContact {
  uuid: string
  addresses: string[]
  fingerprint: string
  /** the peer's own signed record, when the sender holds one */
  record?: SignedPeerRecord
}

export interface KadRequestOptions {
  /** aborted on lookup abort, component stop, or the per-request timeout */
  signal: AbortSignal
}

/** `findValue` answers with the value when the peer holds it, else with closer contacts. */
export type FindValueAnswer =
  | { record: SignedPeerRecord, contacts?: undefined }
  | { record?: undefined, contacts: WireContact[] }

/**
 * The requesting side of the Kademlia RPCs, implemented by whatever carries
 * bytes: the dispatcher (signed, encrypted events) in the daemon, an
 * in-memory network in tests and the simulator. Ids are 20-byte
 * `Uint8Array`s; on the wire the dispatcher sends them as lowercase hex.
 *
 * Implementations must reject (not hang) once `options.signal` aborts; the
 * lookup also races the signal, so a transport that forgets still cannot
 * stall a lookup, only leak its own work.
 */
export interface KadTransport {
  findNode: (target: Uint8Array, to: WireContact, options: KadRequestOptions) => Promise<WireContact[]>
  findValue: (key: Uint8Array, to: WireContact, options: KadRequestOptions) => Promise<FindValueAnswer>
  ping: (to: WireContact, options: KadRequestOptions) => Promise<void>
}

/**
 * The answering side. The transport calls these when a request arrives;
 * `from` is the sender as the transport authenticated it (the dispatcher
 * knows the uuid and key of the session the event came through).
 */
export interface KadRpcHandler {
  handleFindNode: (from: WireContact, target: Uint8Array) => WireContact[]
  handleFindValue: (from: WireContact, key: Uint8Array) => FindValueAnswer
  handlePing: (from: WireContact) => void
}
