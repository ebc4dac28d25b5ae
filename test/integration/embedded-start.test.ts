import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CENTERD, CENTERCTL } from '../_util/peers.js'
import { freePort, waitFor } from '../_util/wait.js'
import { execFileSync } from 'node:child_process'

// `npm start` is `node dist/src/bin/centerd.js` with no config at all: a peer on
// embedded defaults (PGlite and keys under ./var). Only the port is moved, so a
// busy 7700 on the machine cannot fail the test.
test('with no config, centerd starts on embedded defaults and prints its UUID and address', async () => {
  const cwd = mkdtempSync(join(tmpdir(), 'center-embedded-'))
  const port = await freePort()
  const env: NodeJS.ProcessEnv = { ...process.env, CENTER_PEER_LISTEN: `127.0.0.1:${port}` }
  delete env.CENTER_CONFIG
  let out = ''
  const p = spawn(process.execPath, [CENTERD], { cwd, env })
  p.stdout.on('data', (d) => { out += String(d) })
  p.stderr.on('data', (d) => { out += String(d) })
  try {
    const line = await waitFor('the started line', () => out.split('\n').find((l) => l.includes('center peer started')), 60_000)
    const started = JSON.parse(line)
    assert.match(started.uuid, /^[0-9a-f-]{36}$/)
    assert.equal(started.listen, `127.0.0.1:${port}`)
    assert.match(started.database, /^pglite:/)
    assert.equal(statSync(join(cwd, 'var/identity/openpgp.key')).mode & 0o777, 0o600, 'the private key is 0600')
    assert.equal(statSync(join(cwd, 'var/identity/signal.json')).mode & 0o777, 0o600)
    assert.equal(statSync(join(cwd, 'var/admin.sock')).mode & 0o777, 0o600)
    const who = JSON.parse(execFileSync(process.execPath, [CENTERCTL, '--json', 'whoami'], { cwd, env }).toString())
    assert.equal(who.uuid, started.uuid)
    assert.match(who.publicKey, /BEGIN PGP PUBLIC KEY BLOCK/)
    assert.equal(out.includes('BEGIN PGP PRIVATE KEY'), false, 'no secret in the log')
  } finally {
    p.kill('SIGTERM')
    await new Promise((resolve) => p.once('exit', resolve))
    rmSync(cwd, { recursive: true, force: true })
  }
  assert.match(out, /center peer stopped/, 'SIGTERM stops it cleanly')
})
