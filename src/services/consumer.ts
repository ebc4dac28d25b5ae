import type { DispatcherApi } from '../dispatcher/types.js'
import type { Logger } from '../logger.js'
import type { Envelope } from '../wire/envelope.js'
import type { ServiceRegistry } from './registry.js'

export interface InboxConsumerInit {
  /** the built-in service's row in `services` */
  service: string
  /** the events it receives and sends (its grants) */
  events: readonly string[]
  /** names the log lines: "<what> event refused", "<what> events consumer failed" */
  what: string
}

export interface InboxConsumerComponents {
  dispatcher: Pick<DispatcherApi, 'readInbox' | 'onInbox'>
  registry: ServiceRegistry
  logger: Logger
  /** one event; a throw refuses it (logged once, then skipped: it is never retried) */
  handle: (env: Envelope) => Promise<void>
}

const BATCH = 100

/**
 * The read loop every built-in service (`center-peers`, `center-accounts`,
 * `center-sync`) runs on the durable inbox, like any subscriber: events in id
 * order from the cursor saved in its `services` row, one at a time, the cursor
 * saved after each batch. A crash re-reads at most one batch, so handlers must
 * be idempotent (delivery is at-least-once).
 */
export class InboxConsumer {
  private cursor = 0
  private draining: Promise<void> | null = null
  private again = false
  private unsubscribe: (() => void) | null = null

  constructor (private readonly init: InboxConsumerInit, private readonly c: InboxConsumerComponents) {}

  get running (): boolean { return this.unsubscribe !== null }

  /**
   * Register the service (or widen the grants a database made by an older
   * centerd has), load the cursor and listen for new events. Reading starts
   * with the first `drain()`, so the owner can finish its own start first.
   */
  async start (): Promise<void> {
    if (this.unsubscribe !== null) return
    const { service, events } = this.init
    const svc = await this.c.registry.get(service).catch(() => null)
    if (svc === null || svc.state !== 'active') await this.c.registry.add(service, { receive: [...events], send: [...events] })
    else if (events.some((e) => !svc.receive.includes(e) || !svc.send.includes(e))) await this.c.registry.update(service, { receive: [...events], send: [...events] })
    this.cursor = Number((await this.c.registry.get(service)).delivered)
    this.unsubscribe = this.c.dispatcher.onInbox(() => { this.drain() })
  }

  /** Stop listening and wait for the batch being handled. */
  async stop (): Promise<void> {
    this.unsubscribe?.()
    this.unsubscribe = null
    await this.draining
  }

  /** Read until the inbox has nothing newer; a call while reading means "once more". */
  drain (): void {
    if (this.draining !== null) { this.again = true; return }
    this.draining = (async () => {
      do {
        this.again = false
        const events = await this.c.dispatcher.readInbox(this.cursor, this.init.events, BATCH)
        for (const ev of events) {
          await this.c.handle(ev.envelope).catch((err) => {
            this.c.logger.warn({ err: (err as Error).message, code: (err as { code?: string }).code, peer: ev.envelope.meta.from, event: ev.envelope.name }, `${this.init.what} event refused`)
          })
          this.cursor = ev.id
        }
        if (events.length > 0) await this.c.registry.setDelivered(this.init.service, this.cursor)
        if (events.length === BATCH) this.again = true
      } while (this.again && this.unsubscribe !== null)
    })().catch((err) => { this.c.logger.error({ err }, `${this.init.what} events consumer failed`) }).finally(() => { this.draining = null })
  }
}
