import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig, envNameFor } from '../../src/config/index.js'
import { ConfigError } from '../../src/errors.js'

function withFile (text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'center-cfg-'))
  const p = join(dir, 'center.toml')
  writeFileSync(p, text)
  return p
}

test('with no config file the embedded defaults apply: PGlite and state under ./var, loopback', () => {
  const cfg = loadConfig({ env: {}, cwd: '/srv/x' })
  assert.equal(cfg.configPath, null)
  assert.equal(cfg.stateDir, '/srv/x/var')
  assert.equal(cfg.database.url, null)
  assert.equal(cfg.database.pgliteDir, '/srv/x/var/pgdata')
  assert.deepEqual(cfg.peer.listen, { host: '127.0.0.1', port: 7700 })
  assert.equal(cfg.admin.socket, '/srv/x/var/admin.sock')
})

test('a config file keeps its state beside it unless it says otherwise', () => {
  const p = withFile('[peer]\ndomain = "a.test"\nlisten = "[::1]:7711"\n')
  const cfg = loadConfig({ configPath: p, env: {} })
  assert.equal(cfg.stateDir, join(p, '..'))
  assert.deepEqual(cfg.peer.listen, { host: '::1', port: 7711 })
  assert.equal(cfg.peer.domain, 'a.test')
  const q = withFile('state_dir = "/var/lib/center"\n')
  assert.equal(loadConfig({ configPath: q, env: {} }).stateDir, '/var/lib/center')
})

test('CENTER_* environment variables override the file, typed by the schema', () => {
  const p = withFile('[limits]\nclock_skew_seconds = 30\n')
  const cfg = loadConfig({ configPath: p, env: { CENTER_LIMITS_CLOCK_SKEW_SECONDS: '90', CENTER_DATABASE_URL: 'postgres://x@y/z' } })
  assert.equal(cfg.limits.clockSkewSeconds, 90)
  assert.equal(cfg.database.url, 'postgres://x@y/z')
  assert.equal(envNameFor('peer', 'listen'), 'CENTER_PEER_LISTEN')
})

test('errors name the key and what is wrong', () => {
  const cases: Array<[string, RegExp]> = [
    ['[peer]\nlisten = 7\n', /peer\.listen must be string/],
    ['[peer]\ngreeting = "sometimes"\n', /peer\.greeting must be one of auto, manual/],
    ['[limits]\nmax_frame_bytes = 10\n', /limits\.max_frame_bytes must be >= 4096/],
    ['[peer]\nlisen = "x"\n', /unknown key peer\.lisen/],
    ['[database]\nurl = "mysql://x"\n', /database\.url must match/],
    ['[peer]\nlisten = "nohost"\n', /peer\.listen: expected HOST:PORT/],
    ['not toml = = =', /not valid TOML/]
  ]
  for (const [text, re] of cases) {
    assert.throws(() => loadConfig({ configPath: withFile(text), env: {} }), (err: Error) => err instanceof ConfigError && re.test(err.message), text)
  }
  assert.throws(() => loadConfig({ env: { CENTER_LIMITS_CLOCK_SKEW_SECONDS: 'soon' } }), /CENTER_LIMITS_CLOCK_SKEW_SECONDS: must be an integer/)
  assert.throws(() => loadConfig({ configPath: '/nonexistent/center.toml', env: {} }), /does not exist/)
})

test('the default TTL may not exceed the maximum, whichever of the two is set', () => {
  assert.throws(() => loadConfig({ configPath: withFile('[limits]\ndefault_ttl_seconds = 3000000\n'), env: {} }), /default_ttl_seconds \(3000000\) must not exceed limits.max_ttl_seconds \(2592000\)/)
  assert.throws(() => loadConfig({ configPath: withFile('[limits]\nmax_ttl_seconds = 3600\n'), env: {} }), /must not exceed/)
  assert.doesNotThrow(() => loadConfig({ configPath: withFile('[limits]\nmax_ttl_seconds = 3600\ndefault_ttl_seconds = 600\n'), env: {} }))
})
