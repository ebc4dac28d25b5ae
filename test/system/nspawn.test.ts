import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { ROOT } from './_run.js'

// Opt-in (about 15 s with a cached rootfs, 1 min more to build it): two
// Debian 12 containers with systemd as PID 1, installed per docs/admin/install.md,
// joined, one event service to service; then `systemctl restart centerd` on
// each and a reboot of one container, with events sent meanwhile: none lost.
// All the work is in scripts/system-test.sh.
const skip = process.env.CENTER_SYSTEM_TEST !== '1' ? 'opt-in: CENTER_SYSTEM_TEST=1 (npm run test:system)'
  : process.getuid?.() !== 0 ? 'needs root' : false

test('two peers under systemd in nspawn containers: units, notify, sandbox, join, event, restart, reboot, stop, watchdog', { skip, timeout: 600_000 }, async (t) => {
  const out: string[] = []
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(join(ROOT, 'scripts/system-test.sh'), [], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out.push(d) })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { out.push(d) })
    child.once('close', resolve)
  })
  const text = out.join('')
  if (code === 77) { t.skip(text.trim().split('\n').pop() ?? 'skipped by the script'); return }
  assert.equal(code, 0, text)
  assert.match(text, /PASS: two peers under systemd/)
  console.log(text.split('\n').filter((l) => /^(== |PASS|stopped in|WatchdogUSec|Result=|NOTE|RESTART-REBOOT|[ab]: |[a-z-]+: \d+ of \d+ arrived)/.test(l)).join('\n'))
})
