import { test } from 'node:test'
import assert from 'node:assert/strict'
import { allocateUid, assignUids, candidateUid, homeSlot, inUidSpace, renumberings, UID_SPACE, type AccountClaim } from '../../src/accounts/uid.js'

test('numbers are a function of the name and stay inside the federation range', () => {
  assert.equal(candidateUid('alice', 0), candidateUid('alice', 0))
  for (const n of ['a', 'alice', 'bob', 'zz-top']) {
    const u = candidateUid(n, 0)
    assert.ok(inUidSpace(u) && u >= 2 ** 30 && u < 2 ** 31 - 1, `${n} -> ${u}`)
  }
  assert.equal(candidateUid('alice', 1) - candidateUid('alice', 0), 1)
  assert.equal(candidateUid('x', 1, { base: 10, slots: 4 }), 10 + ((homeSlot('x', { base: 10, slots: 4 }) + 1) % 4))
  assert.ok(!inUidSpace(1000) && !inUidSpace(65534) && !inUidSpace(100000) && !inUidSpace(2 ** 31))
})

test('home slots spread evenly (chi-square over 64 buckets, 20000 names)', () => {
  const buckets = new Array<number>(64).fill(0)
  const N = 20000
  for (let i = 0; i < N; i++) buckets[homeSlot(`user${i}`) % 64]!++
  const exp = N / 64
  const chi = buckets.reduce((s, o) => s + (o - exp) ** 2 / exp, 0)
  assert.ok(chi < 120, `chi-square ${chi.toFixed(1)} with 63 dof`)
  const slots = new Set(Array.from({ length: N }, (_, i) => homeSlot(`user${i}`)))
  assert.ok(slots.size > N - 5, `only ${slots.size} distinct slots`)
})

test('allocation probes past local ids and other names, and keeps an existing number', async () => {
  const space = { base: 100, slots: 8 }
  const home = candidateUid('alice', 0, space)
  const held = new Map<number, string>([[home, 'bob']])
  const ownerOf = async (u: number): Promise<string | null> => held.get(u) ?? null
  const local = new Set([candidateUid('alice', 1, space)])
  assert.equal(await allocateUid('alice', { ownerOf, localIds: local, space }), candidateUid('alice', 2, space))
  held.set(candidateUid('alice', 2, space), 'alice')
  assert.equal(await allocateUid('alice', { ownerOf, localIds: local, space }), candidateUid('alice', 2, space))
  const full = async (): Promise<string> => 'someone'
  await assert.rejects(allocateUid('alice', { ownerOf: full, localIds: new Set(), space, maxProbes: 8 }), { name: 'UidCollisionError' })
})

test('the real space never hands out a number a local account holds', async () => {
  const local = new Set([candidateUid('dave', 0)])
  const u = await allocateUid('dave', { ownerOf: async () => null, localIds: local })
  assert.equal(u, candidateUid('dave', 1))
})

function shuffle<T> (xs: T[], seed: number): T[] {
  const out = [...xs]
  let s = seed
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31
    const j = s % (i + 1)
    const t = out[i] as T
    out[i] = out[j] as T
    out[j] = t
  }
  return out
}

test('two peers creating colliding names at once converge: the earlier claim keeps the slot', () => {
  const space = { base: 1000, slots: 16 }
  // find two names with the same home slot in a tiny space
  const bySlot = new Map<number, string>()
  let pair: [string, string] | null = null
  for (let i = 0; pair === null; i++) {
    const n = `u${i}`
    const s = homeSlot(n, space)
    const o = bySlot.get(s)
    if (o !== undefined) pair = [o, n]
    else bySlot.set(s, n)
  }
  const [x, y] = pair
  const cx: AccountClaim = { name: x, createdAt: 2000, origin: 'peer-b' }
  const cy: AccountClaim = { name: y, createdAt: 1000, origin: 'peer-a' }
  // each peer alone gave its user the home slot
  const onA = assignUids([cy], new Set(), space)
  const onB = assignUids([cx], new Set(), space)
  assert.equal(onA.get(y), onB.get(x))
  // after they talk, both compute the same: y (earlier) keeps it, x probes on
  const agreed = assignUids([cx, cy], new Set(), space)
  assert.deepEqual(assignUids([cy, cx], new Set(), space), agreed)
  assert.equal(agreed.get(y), candidateUid(y, 0, space))
  assert.notEqual(agreed.get(x), agreed.get(y))
  assert.deepEqual(renumberings(onA, agreed).map((r) => r.name), [x]) // x is new to A; y keeps its number
  assert.deepEqual(renumberings(onB, agreed).filter((r) => r.from !== null), [{ name: x, from: candidateUid(x, 0, space), to: agreed.get(x) }])
})

test('same name created on two peers at once: the earlier (createdAt, origin) claim wins everywhere', () => {
  const a: AccountClaim = { name: 'alice', createdAt: 5, origin: 'peer-b' }
  const b: AccountClaim = { name: 'alice', createdAt: 5, origin: 'peer-a' }
  const m1 = assignUids([a, b])
  const m2 = assignUids([b, a])
  assert.deepEqual(m1, m2)
  assert.equal(m1.size, 1)
  assert.equal(m1.get('alice'), candidateUid('alice', 0))
})

test('assignment is order-independent and collision-free in a crowded space', () => {
  const space = { base: 5000, slots: 128 }
  const claims: AccountClaim[] = Array.from({ length: 100 }, (_, i) => ({ name: `n${i}`, createdAt: i % 7, origin: `p${i % 3}` }))
  const reserved = new Set([5000, 5001, 5064])
  const ref = assignUids(claims, reserved, space)
  for (let seed = 1; seed < 20; seed++) assert.deepEqual(assignUids(shuffle(claims, seed), reserved, space), ref)
  const values = [...ref.values()]
  assert.equal(new Set(values).size, values.length)
  for (const v of values) assert.ok(!reserved.has(v) && v >= 5000 && v < 5128)
  assert.equal(UID_SPACE.base + UID_SPACE.slots < 2 ** 31, true)
})
