import type { OutgoingEvent } from '../dispatcher/types.js'
import type { Envelope } from '../wire/envelope.js'
import type { SendMsg } from './protocol.js'

/** most sends in one `submit` call; more wait for the next round */
export const MAX_SEND_BATCH = 1024

export interface SendQueueComponents {
  /** `dispatcher.submit` bound to the connection's service */
  submit: (events: OutgoingEvent[]) => Promise<Envelope[]>
  /** answer one send: exactly one of these is called per send */
  sent: (msg: SendMsg, env: Envelope) => void
  failed: (msg: SendMsg, err: unknown) => void
  /** false once the connection is gone: queued sends are then dropped, unanswered */
  isOpen: () => boolean
}

function toOutgoing (m: SendMsg): OutgoingEvent {
  const ev: OutgoingEvent = { name: m.name, to: m.to, data: m.data }
  if (m.ttl !== undefined) ev.ttlSeconds = m.ttl
  if (m.nonce !== undefined) ev.nonce = m.nonce
  return ev
}

/**
 * Per-connection send pipeline. A service may pipeline thousands of sends;
 * one transaction per send would make the database the bottleneck, so sends
 * that arrive while a submit is in flight (or in the same socket read) go
 * out together in the next `submit`, in arrival order.
 */
export class SendQueue {
  private queue: SendMsg[] = []
  private busy = false

  constructor (private readonly c: SendQueueComponents) {}

  push (msg: SendMsg): void {
    this.queue.push(msg)
    if (this.busy) return
    this.busy = true
    // a microtask lets every line of the current socket read join the first batch
    queueMicrotask(() => { void this.drain() })
  }

  private async drain (): Promise<void> {
    try {
      while (this.queue.length > 0 && this.c.isOpen()) {
        const batch = this.queue.splice(0, MAX_SEND_BATCH)
        await this.submit(batch)
      }
    } finally {
      // the loop ends with the queue empty, or closed: then nobody is left to answer
      this.queue = []
      this.busy = false
    }
  }

  private async submit (batch: SendMsg[]): Promise<void> {
    let envs: Envelope[]
    try {
      envs = await this.c.submit(batch.map(toOutgoing))
      if (envs.length !== batch.length) throw new Error(`dispatcher answered ${envs.length} envelopes for ${batch.length} events`)
    } catch (err) {
      if (batch.length === 1) return this.c.failed(batch[0], err)
      // @NOTE submit queues nothing of a batch it rejects, so each send is
      // retried alone to find the one at fault and answer the rest
      for (const m of batch) await this.submit([m])
      return
    }
    batch.forEach((m, i) => { this.c.sent(m, envs[i]) })
  }
}
