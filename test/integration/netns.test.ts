import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { Netns, netnsUnsupported } from '../_util/netns.js'
import { waitFor } from '../_util/wait.js'

// The namespace harness the network tests stand on (test/_util/netns.ts):
// hosts reach each other only through their switch, a partition cuts a host
// off and heal brings it back, blockDial stops only outgoing connections,
// and destroy leaves nothing behind.
const skip = netnsUnsupported() ?? false
let net: Netns
let server: ChildProcess | null = null

// a TCP server that answers every connection with "hi" and closes
const SERVER = "require('net').createServer((s) => s.end('hi')).listen(7700, process.argv[1], () => console.log('up'))"
// connect, print what came back or the error code; 1.5 s at most
const CLIENT = "const s = require('net').connect(7700, process.argv[1]); s.setTimeout(1500, () => { console.log('TIMEOUT'); process.exit(0) }); s.on('data', (d) => { console.log(String(d)); process.exit(0) }); s.on('error', (e) => { console.log(e.code); process.exit(0) })"

before(async () => {
  if (skip !== false) return
  net = await Netns.create(['x', 'y'])
  const w = net.wrap('y', process.execPath, ['-e', SERVER, net.host('y').ip])
  server = spawn(w.cmd, w.args, { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve) => server?.stdout?.once('data', () => resolve()))
})

after(async () => {
  server?.kill('SIGKILL')
  await net?.destroy()
})

const dial = async (from: string, to: string): Promise<string> => (await net.exec(from, process.execPath, '-e', CLIENT, to)).trim()

test('hosts reach each other on their addresses, and not the machine\'s loopback', { skip }, async () => {
  assert.equal(net.host('x').ip, '10.55.0.1')
  assert.equal(await dial('x', net.host('y').ip), 'hi')
  assert.equal(await dial('x', '127.0.0.1'), 'ECONNREFUSED', 'x has its own loopback, with nothing on 7700')
})

test('partition cuts a host off; heal brings it back', { skip }, async () => {
  await net.partition('y')
  try {
    assert.match(await dial('x', net.host('y').ip), /TIMEOUT|EHOSTUNREACH/)
  } finally {
    await net.heal('y')
  }
  await waitFor('y reachable again', async () => await dial('x', net.host('y').ip) === 'hi', 10_000, 200)
})

test('blockDial stops a host opening connections; allowDial undoes it', { skip }, async () => {
  await net.blockDial('x', net.host('y').ip, 7700)
  try {
    assert.equal(await dial('x', net.host('y').ip), 'TIMEOUT')
  } finally {
    await net.allowDial('x')
  }
  assert.equal(await dial('x', net.host('y').ip), 'hi')
})

test('an address added later works; destroy removes every namespace', { skip }, async () => {
  const extra = net.spareAddress(1)
  await net.addAddress('x', extra)
  assert.match(await net.exec('x', 'ip', '-4', 'addr', 'show', 'dev', 'eth0'), new RegExp(extra.replace(/\./g, '\\.')))
  const prefix = net.prefix
  await net.destroy()
  const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout
  assert.ok(!left.includes(prefix), `no ${prefix}-* namespace left: ${left}`)
})
