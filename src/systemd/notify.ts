import { spawn } from 'node:child_process'

/**
 * sd_notify(3) for Node, which has no datagram Unix sockets: each message is
 * one run of the `systemd-notify` binary. It waits (with a BARRIER=1) until
 * systemd has read the message, so the message is never dropped because its
 * sender exited first; that is why the unit says NotifyAccess=all.
 *
 * @example
 * await notify('READY=1')        // after start()
 * await notify('STOPPING=1')     // before destroy()
 */

/** The variables systemd sets: NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID. */
export type NotifyEnv = Record<string, string | undefined>

const NOTIFY_TIMEOUT_MS = 10_000

/**
 * Send one or more `KEY=VALUE` lines (`READY=1`, `STOPPING=1`,
 * `STATUS=…`, `WATCHDOG=1`). A no-op when not started by systemd
 * (NOTIFY_SOCKET unset). Never throws: resolves true when systemd-notify
 * exited 0, false otherwise.
 */
export async function notify (state: string, env: NotifyEnv = process.env): Promise<boolean> {
  const socket = env.NOTIFY_SOCKET
  if (socket === undefined || socket === '') return false
  const lines = state.split('\n').filter((l) => l !== '')
  if (lines.length === 0) return false
  return await new Promise<boolean>((resolve) => {
    try {
      const child = spawn('systemd-notify', lines, {
        stdio: 'ignore',
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', NOTIFY_SOCKET: socket },
        timeout: NOTIFY_TIMEOUT_MS
      })
      child.once('error', () => { resolve(false) })
      child.once('exit', (code) => { resolve(code === 0) })
    } catch {
      resolve(false)
    }
  })
}

/** The watchdog interval systemd asked for, in ms, or null (sd_watchdog_enabled(3)). */
export function watchdogIntervalMs (env: NotifyEnv = process.env): number | null {
  const usec = Number(env.WATCHDOG_USEC ?? '')
  if (!Number.isInteger(usec) || usec <= 0) return null
  // WATCHDOG_PID names the process systemd expects the pings from
  if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== '' && Number(env.WATCHDOG_PID) !== process.pid) return null
  return usec / 1000
}

/**
 * Ping systemd's watchdog (WatchdogSec=) at half the interval until `signal`
 * aborts. The timer runs on the event loop, so a stuck loop stops the pings
 * and systemd restarts the daemon. Returns the ping period in ms, or null
 * when no watchdog was asked for.
 */
export function startWatchdog (signal: AbortSignal, env: NotifyEnv = process.env): number | null {
  const interval = watchdogIntervalMs(env)
  if (interval === null || env.NOTIFY_SOCKET === undefined || signal.aborted) return null
  const period = Math.max(1, Math.floor(interval / 2))
  let inFlight = false
  const timer = setInterval(() => {
    // a ping still waiting on systemd counts; do not pile up children
    if (inFlight) return
    inFlight = true
    notify('WATCHDOG=1', env).finally(() => { inFlight = false }).catch(() => {})
  }, period)
  timer.unref()
  signal.addEventListener('abort', () => { clearInterval(timer) }, { once: true })
  return period
}
