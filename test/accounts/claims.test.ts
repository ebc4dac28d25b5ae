import { test } from 'node:test'
import assert from 'node:assert/strict'
import { assignClaimUids, claimKey, nameState, type AccountClaim } from '../../src/accounts/claims.js'
import { candidateUid, homeSlot } from '../../src/accounts/uid.js'

const A = '00000000-0000-4000-8000-00000000000a'
const B = '00000000-0000-4000-8000-00000000000b'
const c = (name: string, createdAt: number, origin = A): AccountClaim => ({ name, createdAt, origin })

test('the earlier of two claims on a name owns it; the later is lost', () => {
  const x = c('bob', 100, B)
  const y = c('bob', 200, A)
  for (const order of [[x, y], [y, x]]) {
    const s = nameState(order, [])
    assert.deepEqual(s.owner, x)
    assert.deepEqual([...s.lost], [claimKey(y)])
  }
  // same instant: the smaller origin uuid wins
  const s = nameState([c('bob', 100, B), c('bob', 100, A)], [])
  assert.equal(s.owner?.origin, A)
})

test('a deletion deletes every claim made before it; a later claim owns the name again', () => {
  const old = c('eve', 100)
  const raced = c('eve', 150, B)
  const again = c('eve', 300, B)
  const s = nameState([old, raced, again], [200])
  assert.deepEqual(s.owner, again)
  assert.deepEqual([...s.deleted.keys()].sort(), [claimKey(old), claimKey(raced)].sort())
  assert.ok(s.lost.has(claimKey(raced)), 'the raced claim lost to the one alive when it was made')
  assert.ok(!s.lost.has(claimKey(again)), 'the name was free again when it was re-created')
  assert.equal(nameState([old], [50]).owner, old, 'a deletion before the claim does not touch it')
})

test('numbers are a pure function of the claims: any arrival order, the same map; deleted claims keep theirs', () => {
  const seen = new Map<number, string>()
  let pair: [string, string] | null = null
  for (let i = 0; pair === null; i++) {
    const n = `u${i.toString(36)}`
    const other = seen.get(homeSlot(n))
    if (other !== undefined) pair = [other, n]
    seen.set(homeSlot(n), n)
  }
  const [n1, n2] = pair
  const claims = [c(n1, 10), c(n2, 20, B), c('alice', 5), c('zed', 30)]
  const ref = assignClaimUids(claims)
  assert.equal(ref.get(claimKey(claims[0]!)), candidateUid(n1, 0))
  assert.equal(ref.get(claimKey(claims[1]!)), candidateUid(n2, 1), 'the later of two colliding names probes on')
  for (let k = 0; k < 20; k++) {
    const shuffled = [...claims].sort(() => Math.random() - 0.5)
    assert.deepEqual([...assignClaimUids(shuffled)].sort(), [...ref].sort())
  }
  assert.equal(new Set(ref.values()).size, claims.length)
})
