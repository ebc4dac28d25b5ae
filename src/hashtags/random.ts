/**
 * A small seeded PRNG (sfc32 seeded through splitmix32), so tests and the
 * simulator can be repeated exactly. Not for secrets.
 */
import type { Id } from './ids.js'

export interface Random {
  /** uniform float in [0, 1) */
  next: () => number
  /** uniform integer in [0, n) */
  int: (n: number) => number
  pick: <T>(items: readonly T[]) => T
  /** Fisher-Yates, in place; returns the same array */
  shuffle: <T>(items: T[]) => T[]
  /** uniform 256-bit ring position */
  id: () => Id
  /** a child generator with its own stream */
  fork: () => Random
}

function splitmix32 (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x9e3779b9) >>> 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

export function createRandom (seed: number): Random {
  const init = splitmix32(seed)
  let a = init(); let b = init(); let c = init(); let d = init()
  const u32 = (): number => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0
    const t = (a + b) | 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) | 0
    c = (c << 21) | (c >>> 11)
    d = (d + 1) | 0
    const r = (t + d) | 0
    c = (c + r) | 0
    return r >>> 0
  }
  for (let i = 0; i < 12; i++) u32()
  const next = (): number => u32() / 4294967296
  const rnd: Random = {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (items) => {
      if (items.length === 0) throw new RangeError('pick from an empty list')
      return items[Math.floor(next() * items.length)] as (typeof items)[number]
    },
    shuffle: (items) => {
      for (let i = items.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1))
        const t = items[i] as (typeof items)[number]
        items[i] = items[j] as (typeof items)[number]
        items[j] = t
      }
      return items
    },
    id: () => {
      let v = 0n
      for (let i = 0; i < 8; i++) v = (v << 32n) | BigInt(u32())
      return v
    },
    fork: () => createRandom(u32())
  }
  return rnd
}
