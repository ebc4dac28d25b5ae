import type { Envelope } from '../wire/envelope.js'

/** An event a local service asks the dispatcher to send. */
export interface OutgoingEvent {
  name: string
  /** a peer UUID, our own UUID (local services only), or '*' for every peer and local subscribers */
  to: string
  data: unknown
  /** seconds until it expires; @default limits.default_ttl_seconds */
  ttlSeconds?: number
  /** the sending service's own id for this send: a retried send with the same nonce is queued once */
  nonce?: string
}

/** An accepted event, as local services see it. `id` grows with arrival order. */
export interface InboxEvent {
  id: number
  envelope: Envelope
}

/**
 * What the local-services side needs from the dispatcher. The services
 * socket and its tests depend on this interface only.
 */
export interface DispatcherApi {
  /** our peer UUID */
  readonly uuid: string
  /**
   * Queue events durably for delivery, on behalf of `service`. Resolves once
   * committed (it survives kill -9); rejects with a typed error (unknown
   * peer, bad name, too big) and queues nothing of a rejected event.
   */
  submit (service: string, events: OutgoingEvent[]): Promise<Envelope[]>
  /** Accepted events with `id > afterId` whose name is in `names`, oldest first. */
  readInbox (afterId: number, names: readonly string[], limit: number): Promise<InboxEvent[]>
  /** The highest inbox id so far (0 if none). */
  maxInboxId (): Promise<number>
  /** Called with the new highest id after inbox rows commit. Returns an unsubscribe function. */
  onInbox (listener: (maxId: number) => void): () => void
}
