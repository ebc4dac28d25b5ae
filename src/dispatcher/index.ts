import type { Db } from '../db/index.js'
import type { Logger } from '../logger.js'
import type { Envelope } from '../wire/envelope.js'
import { Inbox } from './inbox.js'
import { Outbox, type OutboxInit } from './outbox.js'
import type { DispatcherApi, InboxEvent, OutgoingEvent } from './types.js'

export type { DispatcherApi, InboxEvent, OutgoingEvent }

export interface DispatcherComponents {
  db: Db
  logger: Logger
  self: string
  activePeers: () => string[]
  isActivePeer: (uuid: string) => boolean
  onQueued: (tops: Map<string, number>) => void
}

/** The dispatcher as local services see it: a durable outbox and an ordered inbox. */
export class Dispatcher implements DispatcherApi {
  readonly inbox: Inbox
  readonly uuid: string
  private readonly outbox: Outbox

  constructor (init: OutboxInit, c: DispatcherComponents) {
    this.uuid = c.self
    this.inbox = new Inbox(c.db)
    this.outbox = new Outbox(init, { ...c, inbox: this.inbox })
  }

  async load (): Promise<void> { await this.inbox.load() }
  async submit (service: string, events: OutgoingEvent[]): Promise<Envelope[]> { return await this.outbox.submit(service, events) }
  async readInbox (afterId: number, names: readonly string[], limit: number): Promise<InboxEvent[]> { return await this.inbox.read(afterId, names, limit) }
  async maxInboxId (): Promise<number> { return this.inbox.currentMaxId() }
  onInbox (listener: (maxId: number) => void): () => void { return this.inbox.onInbox(listener) }
}
