import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import {
  idToHex, inHalfOpen, inOpen, nodeId, normaliseTag, parseIPv6, parseId, registeredDomain,
  ringAdd, ringDistance, tagKey, vserverBytes, RING_SIZE
} from '../../src/hashtags/ids.js'

test('tag normalisation drops one #, applies NFKC and lower case', () => {
  assert.equal(normaliseTag('#FridaysForFuture'), 'fridaysforfuture')
  assert.equal(normaliseTag('＃ＴＡＧ'), 'tag')
  assert.equal(normaliseTag('Cafe\u0301'), 'café')
  assert.equal(normaliseTag('  #Straße '), 'straße')
  assert.equal(tagKey('#NowPlaying'), tagKey('nowplaying'))
})

test('the tag key is SHA3-256 of the normalised UTF-8 tag', () => {
  const expect = BigInt('0x' + createHash('sha3-256').update('café', 'utf8').digest('hex'))
  assert.equal(tagKey('#CAFÉ'), expect)
})

test('oversized, empty and malformed tags are refused with named errors', () => {
  assert.throws(() => normaliseTag('#' + 'a'.repeat(257)), { name: 'TagTooLongError' })
  assert.throws(() => normaliseTag('#'), { name: 'InvalidTagError' })
  assert.throws(() => normaliseTag('two words'), { name: 'InvalidTagError' })
  assert.throws(() => normaliseTag('a/b'), { name: 'InvalidTagError' })
  assert.throws(() => normaliseTag('##tag'), { name: 'InvalidTagError' })
})

test('IPv6 parsing expands :: and refuses IPv4 and mapped addresses', () => {
  assert.equal(parseIPv6('2001:db8::1').toString('hex'), '20010db8000000000000000000000001')
  assert.equal(parseIPv6('[2001:db8:1:2:3:4:5:6]').toString('hex'), '20010db8000100020003000400050006')
  assert.equal(parseIPv6('64:ff9b::192.0.2.33').toString('hex'), '0064ff9b0000000000000000c0000221')
  assert.throws(() => parseIPv6('192.0.2.1'), { name: 'InvalidAddressError', message: /IPv4/ })
  assert.throws(() => parseIPv6('::ffff:192.0.2.1'), { name: 'InvalidAddressError', message: /IPv4-mapped/ })
  assert.throws(() => parseIPv6('example.org'), { name: 'InvalidAddressError' })
  assert.throws(() => parseIPv6('fe80::1%eth0'), { name: 'InvalidAddressError' })
})

test('domains reduce to the registered domain in Punycode, IPs are refused', () => {
  assert.equal(registeredDomain('social.example.co.uk'), 'example.co.uk')
  assert.equal(registeredDomain('Mastodon.Social.'), 'mastodon.social')
  assert.equal(registeredDomain('chaos.münchen.de'), 'xn--mnchen-3ya.de')
  // ICANN section only: a github.io page is github.io
  assert.equal(registeredDomain('someone.github.io'), 'github.io')
  assert.throws(() => registeredDomain('192.0.2.1'), { name: 'InvalidDomainError', message: /IP address/ })
  assert.throws(() => registeredDomain('2001:db8::1'), { name: 'InvalidDomainError', message: /IP address/ })
  assert.throws(() => registeredDomain('co.uk'), { name: 'InvalidDomainError' })
  assert.throws(() => registeredDomain(''), { name: 'InvalidDomainError' })
})

test('the node ID is SHAKE128(/64‖vs)[0..63] ‖ SHAKE128(domain‖vs) ‖ SHAKE128(/64‖vs)[64..127]', () => {
  const shake = (b: Buffer): Buffer => createHash('shake128', { outputLength: 16 }).update(b).digest()
  const prefix = Buffer.from('20010db8000100020000000000000000', 'hex').subarray(0, 8)
  const net = shake(Buffer.concat([prefix, Buffer.from([3])]))
  const dom = shake(Buffer.concat([Buffer.from('example.org'), Buffer.from([3])]))
  const expect = Buffer.concat([net.subarray(0, 8), dom, net.subarray(8)]).toString('hex')
  assert.equal(idToHex(nodeId({ ip: '2001:db8:1:2::99', domain: 'www.example.org', vserver: 3 })), expect)
  // only the /64 matters, and a different vserver moves the node
  assert.equal(nodeId({ ip: '2001:db8:1:2::1', domain: 'example.org', vserver: 3 }), nodeId({ ip: '2001:db8:1:2:ffff::', domain: 'a.example.org', vserver: 3 }))
  assert.notEqual(nodeId({ ip: '2001:db8:1:2::1', domain: 'example.org', vserver: 4 }), nodeId({ ip: '2001:db8:1:2::1', domain: 'example.org', vserver: 3 }))
})

test('vservers are padded to whole bytes and bounded', () => {
  assert.deepEqual([...vserverBytes(0)], [0])
  assert.deepEqual([...vserverBytes(255)], [255])
  assert.deepEqual([...vserverBytes(256)], [1, 0])
  assert.throws(() => vserverBytes(-1), { name: 'InvalidVserverError' })
  assert.throws(() => vserverBytes(1.5), { name: 'InvalidVserverError' })
  assert.throws(() => vserverBytes(70000), { name: 'InvalidVserverError' })
})

test('malformed IDs are refused', () => {
  assert.throws(() => parseId('abc'), { name: 'MalformedIdError' })
  assert.throws(() => parseId('G'.repeat(64)), { name: 'MalformedIdError' })
  assert.throws(() => parseId(42), { name: 'MalformedIdError' })
  assert.equal(parseId('0'.repeat(63) + 'f'), 15n)
})

test('ring intervals wrap around zero', () => {
  const top = RING_SIZE - 1n
  assert.equal(ringAdd(top, 2n), 1n)
  assert.equal(ringDistance(top, 1n), 2n)
  assert.ok(inOpen(0n, top, 5n))
  assert.ok(!inOpen(5n, top, 5n))
  assert.ok(inHalfOpen(5n, top, 5n))
  assert.ok(inHalfOpen(7n, 3n, 3n))
  assert.ok(!inOpen(3n, 3n, 3n))
})
