import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Check } from '../../src/cli/commands/doctor.js'
import { aptInstall } from '../_util/apt.js'
import { joinInProcess, startInProcessPeer, type InProcessPeer } from '../_util/inproc.js'
import { createTestUser, joinPeers, PeerProcess } from '../_util/peers.js'
import { slapdAvailability, startSlapd, type Slapd } from '../_util/slapd.js'
import { freePort, waitFor } from '../_util/wait.js'
import { ctl } from './_run.js'

async function doctor (config: string, env?: NodeJS.ProcessEnv): Promise<{ code: number, checks: Check[], stderr: string }> {
  const r = await ctl(['--json', '--config', config, 'doctor'], env)
  return { code: r.code, checks: JSON.parse(r.stdout) as Check[], stderr: r.stderr }
}

const find = (checks: Check[], name: string): Check => {
  const c = checks.find((x) => x.check === name)
  assert.ok(c !== undefined, `no check ${name} in ${JSON.stringify(checks.map((x) => x.check))}`)
  return c
}

test('a bad config fails with the key named and a fix', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'center-doctor-'))
  try {
    writeFileSync(join(dir, 'center.toml'), '[peer]\nlisten = "nowhere"\ncolour = "blue"\n')
    const r = await doctor(join(dir, 'center.toml'))
    assert.equal(r.code, 1)
    const c = find(r.checks, 'config')
    assert.equal(c.ok, false)
    assert.match(c.detail, /unknown key peer\.colour/)
    assert.match(c.fix ?? '', /edit .*center\.toml/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a stopped daemon fails the daemon check and skips what needs it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'center-doctor-'))
  try {
    writeFileSync(join(dir, 'center.toml'), '[peer]\ndomain = "stopped.test"\nadmin = "root"\n')
    const r = await doctor(join(dir, 'center.toml'))
    assert.equal(r.code, 1)
    assert.equal(find(r.checks, 'daemon').status, 'fail')
    assert.match(find(r.checks, 'daemon').fix ?? '', /systemctl start centerd/)
    assert.equal(find(r.checks, 'identity').status, 'fail')
    assert.equal(find(r.checks, 'peers').status, 'skip')
    assert.equal(find(r.checks, 'database').status, 'warn', 'PGlite not created yet')
    assert.equal(find(r.checks, 'ldap').status, 'warn')
    assert.ok(['ok', 'warn'].includes(find(r.checks, 'disk').status))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('two joined peers: all passes; the other peer gone fails with a fix, exit 1', { timeout: 120_000 }, async () => {
  const user = await createTestUser()
  const a = await startInProcessPeer('doctor-a')
  const b = await startInProcessPeer('doctor-b')
  try {
    await joinInProcess(a, b, user.name)
    const cfg = join(a.dir, 'center.toml')
    let r = await doctor(cfg)
    assert.equal(r.code, 0, JSON.stringify(r.checks, null, 2))
    assert.equal(find(r.checks, 'daemon').status, 'ok')
    assert.equal(find(r.checks, 'database').status, 'ok')
    assert.equal(find(r.checks, 'identity').status, 'ok')
    assert.equal(find(r.checks, 'peer doctor-b.center.test').status, 'ok')
    const skew = find(r.checks, 'clock skew')
    assert.equal(skew.status, 'ok', skew.detail)
    assert.match(skew.detail, /within 60 s: doctor-b\.center\.test [+-]\d+\.\d s ±\d+\.\d \(asked now\)/)

    await b.stop()
    await waitFor('a to notice', () => a.daemon.ctx.links.get(b.uuid)?.state !== 'open', 20_000)
    r = await doctor(cfg)
    assert.equal(r.code, 1)
    const p = find(r.checks, 'peer doctor-b.center.test')
    assert.equal(p.ok, false)
    assert.match(p.fix ?? '', /nc -vz 127\.0\.0\.1 \d+/)
  } finally {
    await a.stop()
    await b.stop().catch(() => {})
    await user.remove()
  }
})

// ---- faults, one at a time, on a healthy running peer --------------------------------
//
// One real peer (in-process Daemon, real PostgreSQL) and a real slapd with its
// own CA. The config file doctor reads is rewritten per fault; the daemon does
// not care. Everything else passing first makes the exit code the fault's.

interface Fixture { peer: InProcessPeer, slapd: Slapd, cfg: string, base: string, dir: string }

function withSections (f: Fixture, sections: Record<string, Record<string, string | boolean>>): void {
  const toml = Object.entries(sections).map(([name, kv]) =>
    `[${name}]\n` + Object.entries(kv).map(([k, v]) => `${k} = ${typeof v === 'boolean' ? String(v) : JSON.stringify(v)}`).join('\n')).join('\n')
  writeFileSync(f.cfg, `${f.base}\n${toml}\n`)
}

function ldapSection (f: Fixture, over: Record<string, string | boolean> = {}): Record<string, string | boolean> {
  return { url: f.slapd.starttlsUrl, base_dn: f.slapd.baseDn, bind_dn: f.slapd.bindDn, password_file: join(f.dir, 'ldap.secret'), ca_file: join(f.dir, 'ca.crt'), starttls: true, ...over }
}

const onlyFailure = (checks: Check[], name: string): Check => {
  const failed = checks.filter((c) => !c.ok)
  assert.deepEqual(failed.map((c) => c.check), [name], JSON.stringify(failed, null, 2))
  return failed[0] as Check
}

const slapdSkip = process.getuid?.() !== 0 ? 'needs root (slapd, useradd)' : false

describe('doctor reports each fault with a fix and exit 1', { skip: slapdSkip, timeout: 300_000 }, () => {
  let f: Fixture
  before(async () => {
    const avail = slapdAvailability()
    if (!avail.ok) throw new Error(avail.reason)
    const slapd = await startSlapd()
    const peer = await startInProcessPeer(`doctor-${randomBytes(2).toString('hex')}`)
    const dir = mkdtempSync(join(tmpdir(), 'center-doctor-f-'))
    writeFileSync(join(dir, 'ca.crt'), slapd.ca)
    writeFileSync(join(dir, 'other-ca.crt'), slapd.otherCa)
    writeFileSync(join(dir, 'ldap.secret'), slapd.bindPassword + '\n', { mode: 0o600 })
    mkdirSync(join(dir, 'center'))
    const cfg = join(peer.dir, 'center.toml')
    f = { peer, slapd, cfg, base: readFileSync(cfg, 'utf8'), dir }
  })
  after(async () => {
    await f?.peer.stop()
    await f?.slapd.stop()
    if (f !== undefined) rmSync(f.dir, { recursive: true, force: true })
  })

  test('healthy: LDAP over StartTLS and over ldaps, both with the right CA, pass; exit 0', async () => {
    withSections(f, { ldap: ldapSection(f), center: { root: join(f.dir, 'center'), quota: 'none' } })
    let r = await doctor(f.cfg)
    assert.equal(r.code, 0, JSON.stringify(r.checks, null, 2))
    assert.equal(find(r.checks, 'ldap').status, 'ok')
    assert.match(find(r.checks, 'ldap').detail, /StartTLS, certificate verified against .*ca\.crt.*bound as cn=admin/)
    assert.equal(find(r.checks, 'quota').status, 'warn')
    withSections(f, { ldap: ldapSection(f, { url: f.slapd.url }) })
    r = await doctor(f.cfg)
    assert.equal(r.code, 0, JSON.stringify(r.checks, null, 2))
    assert.match(find(r.checks, 'ldap').detail, /\(ldaps, certificate verified/)
  })

  test('LDAP down: nothing answers at [ldap] url', async () => {
    const port = await freePort()
    withSections(f, { ldap: ldapSection(f, { url: `ldap://127.0.0.1:${port}` }) })
    const r = await doctor(f.cfg)
    assert.equal(r.code, 1)
    const c = onlyFailure(r.checks, 'ldap')
    assert.match(c.detail, new RegExp(`ldap://127\\.0\\.0\\.1:${port} does not answer .*ECONNREFUSED`))
    assert.match(c.fix ?? '', /systemctl status slapd/)
  })

  test('wrong CA: slapd\'s certificate is not signed by [ldap] ca_file (StartTLS and ldaps)', async () => {
    for (const url of [f.slapd.starttlsUrl, f.slapd.url]) {
      withSections(f, { ldap: ldapSection(f, { url, ca_file: join(f.dir, 'other-ca.crt') }) })
      const r = await doctor(f.cfg)
      assert.equal(r.code, 1, url)
      const c = onlyFailure(r.checks, 'ldap')
      assert.match(c.detail, /TLS certificate not trusted \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED_CERT_IN_CHAIN)/)
      assert.match(c.fix ?? '', /ca_file .*other-ca\.crt.* is not the CA that signed slapd's certificate; .*openssl s_client/)
    }
  })

  test('LDAP: a wrong bind password is told apart from TLS and outage', async () => {
    writeFileSync(join(f.dir, 'bad.secret'), 'not-the-password\n', { mode: 0o600 })
    withSections(f, { ldap: ldapSection(f, { password_file: join(f.dir, 'bad.secret') }) })
    const r = await doctor(f.cfg)
    assert.equal(r.code, 1)
    const c = onlyFailure(r.checks, 'ldap')
    assert.match(c.detail, /bind as cn=admin,dc=center,dc=test refused: invalid credentials/)
    assert.match(c.fix ?? '', /bad\.secret/)
  })

  test('database down: nothing answers at [database] url', async () => {
    // the shared PostgreSQL cannot be stopped under other tests: a port where
    // no PostgreSQL listens is what doctor sees of a stopped server
    const port = await freePort()
    const base = f.base
    f.base = base.replace(/^url = ".*"$/m, `url = "postgres://postgres@127.0.0.1:${port}/center"`)
    assert.notEqual(f.base, base)
    try {
      withSections(f, { ldap: ldapSection(f) })
    } finally { f.base = base }
    const r = await doctor(f.cfg)
    assert.equal(r.code, 1)
    const c = onlyFailure(r.checks, 'database')
    assert.match(c.detail, new RegExp(`PostgreSQL postgres@127\\.0\\.0\\.1:${port}/center: .*ECONNREFUSED`))
    assert.match(c.fix ?? '', /systemctl status postgresql/)
  })

  test('quota backend missing: btrfs asked for, tree not on btrfs; or the btrfs tool absent', async () => {
    const root = join(f.dir, 'center')
    const fsType = execFileSync('stat', ['-f', '-c', '%T', root], { encoding: 'utf8' }).trim()
    assert.notEqual(fsType, 'btrfs', 'the temp dir must not be on btrfs for this test')
    if (aptInstall(['btrfs-progs']) === null) throw new Error('not root')
    withSections(f, { ldap: ldapSection(f), center: { root, quota: 'btrfs' } })
    let r = await doctor(f.cfg)
    assert.equal(r.code, 1)
    let c = onlyFailure(r.checks, 'quota')
    assert.equal(c.detail, `[center] quota = "btrfs" but ${root} is on ${fsType}, not btrfs`)
    assert.match(c.fix ?? '', /put .* on a btrfs file system/)

    // no btrfs on PATH: what a box without btrfs-progs looks like
    const empty = join(f.dir, 'empty-bin')
    mkdirSync(empty, { recursive: true })
    symlinkSync('/usr/bin/stat', join(empty, 'stat'))
    r = await doctor(f.cfg, { ...process.env, PATH: empty })
    c = find(r.checks, 'quota')
    assert.equal(r.code, 1)
    assert.equal(c.status, 'fail')
    assert.match(c.detail, /\[center\] quota = "btrfs" but btrfs is not installed/)
    assert.equal(c.fix, 'apt-get install btrfs-progs')
  })
})

describe('clock skew over the limit, measured against a real peer', { skip: process.getuid?.() !== 0 ? 'needs root (useradd)' : false, timeout: 300_000 }, () => {
  test('a peer 300 s ahead: doctor fails on both sides with a fix, exit 1; the peer list shows the offset', async () => {
    const user = await createTestUser()
    const a = await PeerProcess.create({ name: `skewa${randomBytes(2).toString('hex')}` })
    const b = await PeerProcess.create({ name: `skewb${randomBytes(2).toString('hex')}` })
    try {
      await a.start()
      await b.start()
      await joinPeers(a, b, user.name)
      let r = await doctor(a.configPath)
      assert.equal(find(r.checks, 'clock skew').status, 'ok', find(r.checks, 'clock skew').detail)

      // TEST-ONLY fault: CENTER_TEST_CLOCK_OFFSET_SECONDS shifts b's clock
      // (src/wire/envelope.ts); one machine has one real clock
      await b.stop()
      process.env.CENTER_TEST_CLOCK_OFFSET_SECONDS = '300'
      try { await b.start() } finally { delete process.env.CENTER_TEST_CLOCK_OFFSET_SECONDS }

      r = await doctor(a.configPath)
      assert.equal(r.code, 1)
      const c = find(r.checks, 'clock skew')
      assert.equal(c.status, 'fail', c.detail)
      assert.match(c.detail, new RegExp(`over the 60 s peers allow \\(\\[limits\\] clock_skew_seconds\\): ${b.name}\\.center\\.test is 30\\d s ahead of this box`))
      assert.match(c.fix ?? '', /timedatectl set-ntp true/)

      // b's side: a is behind; b's daemon measured it from a's frames too
      r = await doctor(b.configPath, { ...process.env, CENTER_TEST_CLOCK_OFFSET_SECONDS: '300' })
      assert.equal(r.code, 1)
      assert.match(find(r.checks, 'clock skew').detail, new RegExp(`${a.name}\\.center\\.test is 30\\d s behind this box`))
      const rows = await waitFor('b to have measured a from its frames', async () => {
        const list = await b.ctl('peer', 'list') as Array<{ uuid: string, clockOffsetSeconds: number | null }>
        const row = list.find((p) => p.uuid === a.uuid)
        return row?.clockOffsetSeconds !== null && row?.clockOffsetSeconds !== undefined ? row : null
      }, 60_000, 500)
      assert.ok(rows.clockOffsetSeconds! < -298 && rows.clockOffsetSeconds! > -303, String(rows.clockOffsetSeconds))
    } finally {
      await a.destroy()
      await b.destroy()
      await user.remove()
    }
  })
})
