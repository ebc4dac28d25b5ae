import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '../../src/config/index.js'
import { CENTER_LAYOUT } from '../../src/cli/commands/setup.js'
import { notify, startWatchdog } from '../../src/systemd/notify.js'

// The shipped units, checked with systemd's own tools, offline: no systemd
// needs to run here. `systemd-analyze verify` exits 0 on unknown keys, so any
// output at all is a failure.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
const UNITS = join(ROOT, 'systemd')
const MAX_EXPOSURE = 4.0

function haveSystemdAnalyze (): boolean {
  if (spawnSync('systemd-analyze', ['--version']).status === 0) return true
  if (process.getuid?.() !== 0) return false
  spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'systemd'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  return spawnSync('systemd-analyze', ['--version']).status === 0
}

const skip = haveSystemdAnalyze() ? false : 'systemd-analyze is not installed and could not be installed (needs root: apt-get install systemd)'

/**
 * A throwaway root holding the host's stock units (sysinit.target & co.),
 * ours, and an executable /usr/bin/node, so verify checks ExecStart= the same
 * on every machine.
 */
function unitRoot (): string {
  const r = mkdtempSync(join(tmpdir(), 'center-units-'))
  mkdirSync(join(r, 'etc/systemd/system'), { recursive: true })
  mkdirSync(join(r, 'usr/bin'), { recursive: true })
  if (existsSync('/usr/lib/systemd/system')) cpSync('/usr/lib/systemd/system', join(r, 'usr/lib/systemd/system'), { recursive: true })
  for (const u of ['centerd.service', 'center-service@.service']) cpSync(join(UNITS, u), join(r, 'etc/systemd/system', u))
  writeFileSync(join(r, 'usr/bin/node'), '#!/bin/sh\n')
  chmodSync(join(r, 'usr/bin/node'), 0o755)
  return r
}

function run (cmd: string, args: string[]): { status: number | null, out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  return { status: r.status, out: `${r.stdout}${r.stderr}`.trim() }
}

function exposure (unitPath: string): number {
  const r = run('systemd-analyze', ['security', '--offline=true', '--no-pager', unitPath])
  const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(r.out)
  assert.ok(m !== null, `no exposure level in:\n${r.out}`)
  return Number(m[1])
}

test('systemd-analyze verify prints nothing for centerd and a center-service@ instance', { skip }, () => {
  const r = unitRoot()
  try {
    for (const unit of ['centerd.service', 'center-service@center-hashtags.service']) {
      const v = run('systemd-analyze', ['verify', '--man=no', `--root=${r}`, `/etc/systemd/system/${unit}`])
      assert.equal(v.out, '', `${unit}: ${v.out}`)
      assert.equal(v.status, 0)
    }
  } finally {
    rmSync(r, { recursive: true, force: true })
  }
})

test('verify does catch a misspelt key (the check above is not vacuous)', { skip }, () => {
  const r = unitRoot()
  try {
    const p = join(r, 'etc/systemd/system/centerd.service')
    writeFileSync(p, readFileSync(p, 'utf8').replace(/^ProtectSystem=/m, 'ProtectSytem='))
    assert.match(run('systemd-analyze', ['verify', '--man=no', `--root=${r}`, '/etc/systemd/system/centerd.service']).out, /Unknown key 'ProtectSytem'/)
  } finally {
    rmSync(r, { recursive: true, force: true })
  }
})

test(`centerd.service exposure (systemd-analyze security --offline) is at most ${MAX_EXPOSURE}`, { skip }, () => {
  const level = exposure(join(UNITS, 'centerd.service'))
  console.log(`centerd.service overall exposure: ${level}`)
  assert.ok(level <= MAX_EXPOSURE, `exposure ${level} > ${MAX_EXPOSURE}`)
})

test(`a center-service@ instance exposure is at most ${MAX_EXPOSURE}`, { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'center-units-'))
  try {
    cpSync(join(UNITS, 'center-service@.service'), join(dir, 'center-service@center-hashtags.service'))
    const level = exposure(join(dir, 'center-service@center-hashtags.service'))
    console.log(`center-service@center-hashtags.service overall exposure: ${level}`)
    assert.ok(level <= MAX_EXPOSURE, `exposure ${level} > ${MAX_EXPOSURE}`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('centerd.service outlasts the daemon\'s 20 s forced exit and keeps to the paths it needs', () => {
  const unit = readFileSync(join(UNITS, 'centerd.service'), 'utf8')
  const key = (k: string): string[] => [...unit.matchAll(new RegExp(`^${k}=(.*)$`, 'gm'))].map((m) => (m[1] as string).trim())
  const stop = /^(\d+)s$/.exec(key('TimeoutStopSec')[0] ?? '')
  assert.ok(stop !== null && Number(stop[1]) > 20, 'TimeoutStopSec must exceed FORCE_EXIT_MS (20 s) in src/bin/centerd.ts')
  assert.deepEqual(key('Type'), ['notify'])
  assert.deepEqual(key('NotifyAccess'), ['all'])
  assert.deepEqual(key('ProtectSystem'), ['strict'])
  assert.deepEqual(key('ReadWritePaths'), ['/center -/home'])
  assert.deepEqual(key('StateDirectory'), ['center'])
  assert.deepEqual(key('RuntimeDirectory'), ['center'])
  assert.deepEqual(key('CapabilityBoundingSet'), ['CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE'])
  assert.ok(key('WatchdogSec').length === 1)
})

test('sysusers.d and tmpfiles.d create the account and the directories, with the modes setup center uses', { skip }, () => {
  const r = mkdtempSync(join(tmpdir(), 'center-root-'))
  try {
    mkdirSync(join(r, 'etc'))
    writeFileSync(join(r, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n')
    writeFileSync(join(r, 'etc/group'), 'root:x:0:\n')
    const su = run('systemd-sysusers', [`--root=${r}`, join(UNITS, 'sysusers.d/center.conf')])
    assert.equal(su.status, 0, su.out)
    const pw = readFileSync(join(r, 'etc/passwd'), 'utf8')
    const line = pw.split('\n').find((l) => l.startsWith('center:'))
    assert.ok(line !== undefined, pw)
    const uid = Number(line.split(':')[2])
    assert.ok(uid > 0 && uid < 1000, `center must be a system account, got uid ${uid}`)
    const tf = run('systemd-tmpfiles', ['--create', `--root=${r}`, join(UNITS, 'tmpfiles.d/center.conf')])
    assert.equal(tf.status, 0, tf.out)
    assert.equal(statSync(join(r, 'var/lib/center')).mode & 0o7777, 0o700)
    assert.equal(statSync(join(r, 'var/lib/center')).uid, uid)
    for (const d of CENTER_LAYOUT) {
      const st = statSync(join(r, 'center', d.path))
      assert.equal(st.mode & 0o7777, d.mode, `/center/${d.path} mode`)
      assert.equal(st.uid, d.owner === 'center' ? uid : 0, `/center/${d.path} owner`)
      assert.equal(st.gid, d.group === 'center' ? uid : 0, `/center/${d.path} group`)
    }
  } finally {
    rmSync(r, { recursive: true, force: true })
  }
})

test('center.toml.example is a valid config with state in /var/lib/center and sockets in /run/center', () => {
  const cfg = loadConfig({ configPath: join(UNITS, 'center.toml.example'), env: {} })
  assert.equal(cfg.stateDir, '/var/lib/center')
  assert.equal(cfg.admin.socket, '/run/center/admin.sock')
  assert.equal(cfg.services.socket, '/run/center/services.sock')
})

// sd_notify through systemd-notify, received on a real datagram socket the
// way PID 1 receives it (python3 binds it: Node cannot).
const PY_RECEIVER = [
  'import socket, sys',
  's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
  's.bind(sys.argv[1])',
  'print("bound", flush=True)',
  'while True:',
  '    print(repr(s.recv(4096).decode()), flush=True)'
].join('\n')

const notifySkip = spawnSync('python3', ['--version']).status !== 0 ? 'python3 is needed to receive datagrams'
  : spawnSync('systemd-notify', ['--help']).status !== 0 ? 'systemd-notify is not installed' : false

async function receiver (): Promise<{ socket: string, messages: string[], close: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'center-notify-'))
  const socket = join(dir, 'notify.sock')
  const child = spawn('python3', ['-c', PY_RECEIVER, socket], { stdio: ['ignore', 'pipe', 'inherit'] })
  const messages: string[] = []
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject)
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      for (const line of chunk.split('\n').filter(Boolean)) {
        if (line === 'bound') resolve()
        else messages.push(line)
      }
    })
  })
  return { socket, messages, close: () => { child.kill(); rmSync(dir, { recursive: true, force: true }) } }
}

test('notify is a no-op without NOTIFY_SOCKET and never throws', async () => {
  assert.equal(await notify('READY=1', {}), false)
  assert.equal(await notify('READY=1', { NOTIFY_SOCKET: '/nonexistent/socket' }), false)
  assert.equal(startWatchdog(new AbortController().signal, { WATCHDOG_USEC: '1000000' }), null)
})

test('notify delivers READY=1 and STOPPING=1 to NOTIFY_SOCKET', { skip: notifySkip }, async () => {
  const r = await receiver()
  try {
    assert.equal(await notify('READY=1\nSTATUS=peer started', { NOTIFY_SOCKET: r.socket }), true)
    assert.equal(await notify('STOPPING=1', { NOTIFY_SOCKET: r.socket }), true)
    const deadline = Date.now() + 3000
    while (r.messages.filter((m) => !m.includes('BARRIER')).length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    assert.deepEqual(r.messages.filter((m) => !m.includes('BARRIER')), ["'READY=1\\nSTATUS=peer started'", "'STOPPING=1'"])
  } finally {
    r.close()
  }
})

test('startWatchdog pings at half of WATCHDOG_USEC and stops on abort', { skip: notifySkip }, async () => {
  const r = await receiver()
  const ac = new AbortController()
  try {
    const env = { NOTIFY_SOCKET: r.socket, WATCHDOG_USEC: '200000', WATCHDOG_PID: String(process.pid) }
    assert.equal(startWatchdog(ac.signal, env), 100)
    // unref'd: keep the loop alive ourselves while we wait
    await new Promise((resolve) => setTimeout(resolve, 550))
    ac.abort()
    const pings = r.messages.filter((m) => m === "'WATCHDOG=1'").length
    assert.ok(pings >= 3 && pings <= 6, `expected about 5 pings in 550 ms, got ${pings}`)
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.ok(r.messages.filter((m) => m === "'WATCHDOG=1'").length <= pings + 1, 'pings went on after abort')
    assert.equal(startWatchdog(new AbortController().signal, { ...env, WATCHDOG_PID: '1' }), null, 'WATCHDOG_PID of another process')
  } finally {
    ac.abort()
    r.close()
  }
})
