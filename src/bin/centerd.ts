#!/usr/bin/env node
import { parseArgs } from 'node:util'
import { loadConfig } from '../config/index.js'
import { Daemon } from '../daemon.js'
import { notify, startWatchdog } from '../systemd/notify.js'
import { setTestClockOffset } from '../wire/envelope.js'

// Thin entrypoint: read config, create, start, and stop on a signal.
const { values } = parseArgs({ options: { config: { type: 'string' } } })
const FORCE_EXIT_MS = 20_000

async function main (): Promise<void> {
  // tests only (test/system/doctor.test.ts): a peer with a skewed clock
  if (process.env.CENTER_TEST_CLOCK_OFFSET_SECONDS !== undefined) setTestClockOffset(Number(process.env.CENTER_TEST_CLOCK_OFFSET_SECONDS))
  const daemon = await Daemon.create(loadConfig({ configPath: values.config }))
  if (process.env.CENTER_TEST_CLOCK_OFFSET_SECONDS !== undefined) daemon.ctx.logger.warn({ offsetSeconds: Number(process.env.CENTER_TEST_CLOCK_OFFSET_SECONDS) }, 'TEST ONLY: this peer\'s clock is shifted (CENTER_TEST_CLOCK_OFFSET_SECONDS)')
  const watchdog = new AbortController()
  const stop = (signal: string): void => {
    daemon.ctx.logger.info({ signal }, 'stopping')
    watchdog.abort()
    notify('STOPPING=1').catch(() => {})
    // last resort only; systemd's TimeoutStopSec is longer than this
    setTimeout(() => { process.exit(1) }, FORCE_EXIT_MS).unref()
    daemon.destroy().then(() => { process.exitCode = 0 }, (err) => { daemon.ctx.logger.error({ err }, 'stop failed'); process.exitCode = 1 })
  }
  process.once('SIGTERM', () => { stop('SIGTERM') })
  process.once('SIGINT', () => { stop('SIGINT') })
  await daemon.start()
  // systemd (Type=notify): ready only now that peers, services and the admin socket are up
  await notify(`READY=1\nSTATUS=peer ${daemon.ctx.identity.uuid} at ${daemon.advertise()}`)
  startWatchdog(watchdog.signal)
}

main().catch((err) => {
  process.stderr.write(`centerd: ${(err as Error).name}: ${(err as Error).message}\n`)
  process.exitCode = 1
})
