import { test } from 'node:test'
import assert from 'node:assert/strict'
import { main } from '../../src/hashtags/cli.js'
import { idToHex, nodeId, tagKey } from '../../src/hashtags/ids.js'

function run (argv: string[]): { code: number, out: string[], err: string[] } {
  const out: string[] = []
  const err: string[] = []
  const code = main(argv, { out: l => out.push(l), err: l => err.push(l) })
  return { code, out, err }
}

test('node-id prints the ID of an IPv6 address, domain and vserver', () => {
  const r = run(['node-id', '--ip', '2001:db8:1:2::5', '--domain', 'social.example.co.uk', '--vserver', '3'])
  assert.equal(r.code, 0)
  assert.deepEqual(r.out, [idToHex(nodeId({ ip: '2001:db8:1:2::5', domain: 'example.co.uk', vserver: 3 }))])
  assert.match(r.err[0]!, /registered domain example\.co\.uk/)
})

test('key prints the SHA3-256 key of the normalised tag', () => {
  const r = run(['key', '#NowPlaying'])
  assert.equal(r.code, 0)
  assert.deepEqual(r.out, [idToHex(tagKey('nowplaying'))])
})

test('bad input exits 2 with a clear message', () => {
  const cases: Array<[string[], RegExp]> = [
    [['node-id', '--ip', '192.0.2.1', '--domain', 'a.example'], /IPv4 address/],
    [['node-id', '--ip', '2001:db8::1', '--domain', '2001:db8::1'], /IP address; give the instance's domain/],
    [['node-id', '--ip', '2001:db8::1', '--domain', '192.0.2.1'], /IP address/],
    [['node-id', '--ip', '2001:db8::1'], /needs --ip and --domain/],
    [['node-id', '--ip', '2001:db8::1', '--domain', 'a.example', '--vserver', '-1'], /vserver/],
    [['node-id', '--ip', '2001:db8::1', '--domain', 'a.example', '--vserver', '99999'], /vserver/],
    [['key', '#' + 'x'.repeat(300)], /longer than 256 bytes/],
    [['key'], /exactly one TAG/],
    [['frobnicate'], /unknown command/],
    [[], /no command/]
  ]
  for (const [argv, msg] of cases) {
    const r = run(argv)
    assert.equal(r.code, 2, argv.join(' '))
    assert.match(r.err.join('\n'), msg)
  }
})
