/**
 * Minimal types for k-bucket@5.1.0, which ships none. Only what
 * `table.ts` uses is declared; widen it when you need more.
 */
declare module 'k-bucket' {
  import { EventEmitter } from 'node:events'

  export interface KBucketContact {
    id: Uint8Array
  }

  export interface KBucketOptions<C extends KBucketContact> {
    localNodeId?: Uint8Array
    /** bucket size k; @default 20 */
    numberOfNodesPerKBucket?: number
    /** how many of the oldest contacts a `ping` event carries; @default 3 */
    numberOfNodesToPing?: number
    distance?: (a: Uint8Array, b: Uint8Array) => number
    arbiter?: (incumbent: C, candidate: C) => C
    metadata?: Record<string, unknown>
  }

  export default class KBucket<C extends KBucketContact = KBucketContact> extends EventEmitter {
    constructor (options?: KBucketOptions<C>)
    readonly localNodeId: Uint8Array
    readonly numberOfNodesPerKBucket: number
    add (contact: C): this
    remove (id: Uint8Array): this
    get (id: Uint8Array): C | null
    closest (id: Uint8Array, n?: number): C[]
    count (): number
    toArray (): C[]
    toIterable (): Iterable<C>
    static distance (a: Uint8Array, b: Uint8Array): number
  }
}
