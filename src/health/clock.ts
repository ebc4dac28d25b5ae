import { request } from 'node:http'
import { nowMs } from '../wire/envelope.js'
import { check, type Check } from './check.js'

const PROBE_TIMEOUT_MS = 5_000

export interface ClockPeer { uuid: string, domain: string, address: string, clockOffsetSeconds?: number | null }

export interface ClockReading {
  peer: ClockPeer
  /** seconds the peer's clock is ahead of ours (negative: behind); null when unmeasured */
  offset: number | null
  /** how the figure was got: the peer's HTTP endpoint now, or the daemon's record of its frames */
  source: 'probe' | 'frames' | null
  /** ± seconds */
  error: number
  note: string
}

/**
 * Ask the peer's own endpoint for the time (x-center-time, ms; the Date
 * header as a fallback) and compare with ours at the middle of the round
 * trip, as NTP does. The error is half the round trip (plus a second for Date).
 */
export async function probePeerClock (address: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<{ offset: number, error: number }> {
  const m = /^(?:\[(.*)\]|([^:]*)):(\d+)$/.exec(address)
  if (m === null) throw new Error(`not HOST:PORT: ${address}`)
  const t0 = nowMs()
  const headers = await new Promise<Record<string, string | string[] | undefined>>((resolve, reject) => {
    const req = request({ host: m[1] ?? m[2], port: Number(m[3]), path: '/', method: 'GET', timeout: timeoutMs }, (res) => {
      res.resume()
      resolve(res.headers)
    })
    req.on('timeout', () => { req.destroy(new Error(`no answer within ${timeoutMs} ms`)) })
    req.on('error', reject)
    req.end()
  })
  const t1 = nowMs()
  const mid = (t0 + t1) / 2
  const ms = Number(headers['x-center-time'])
  if (Number.isFinite(ms) && ms > 0) return { offset: (ms - mid) / 1000, error: (t1 - t0) / 2000 }
  const date = Date.parse(String(headers.date ?? ''))
  if (Number.isNaN(date)) throw new Error('the answer carries no time')
  // Date is floored to the second
  return { offset: (date + 500 - mid) / 1000, error: 0.5 + (t1 - t0) / 2000 }
}

export async function readPeerClocks (peers: ClockPeer[]): Promise<ClockReading[]> {
  return await Promise.all(peers.map(async (peer): Promise<ClockReading> => {
    try {
      const r = await probePeerClock(peer.address)
      return { peer, offset: r.offset, error: r.error, source: 'probe', note: '' }
    } catch (err) {
      const recorded = peer.clockOffsetSeconds ?? null
      const note = `${peer.address} did not answer (${(err as Error).message})`
      return recorded === null
        ? { peer, offset: null, error: 0, source: null, note }
        : { peer, offset: recorded, error: 1, source: 'frames', note }
    }
  }))
}

const fmt = (r: ClockReading): string => r.offset === null
  ? `${r.peer.domain} not measured: ${r.note}`
  : `${r.peer.domain} ${r.offset >= 0 ? '+' : ''}${r.offset.toFixed(1)} s ±${r.error.toFixed(1)} (${r.source === 'probe' ? 'asked now' : 'from its recent frames'})`

/**
 * One line for all peers. Over the limit, peers refuse each other's frames
 * and events as "from the future" or stale: a failure. Past half the limit, a
 * warning, before it bites.
 */
export function clockSkewCheck (readings: ClockReading[], limitSeconds: number): Check {
  if (readings.length === 0) return check('clock skew', 'skip', 'not checked: no peers to compare with')
  const measured = readings.filter((r) => r.offset !== null)
  const detail = readings.map(fmt).join('; ')
  if (measured.length === 0) return check('clock skew', 'skip', `not checked: ${detail}`)
  const over = measured.filter((r) => Math.abs(r.offset as number) - r.error > limitSeconds)
  if (over.length > 0) {
    const who = over.map((r) => `${r.peer.domain} is ${Math.abs(r.offset as number).toFixed(0)} s ${(r.offset as number) > 0 ? 'ahead of' : 'behind'} this box`).join(', ')
    return check('clock skew', 'fail', `over the ${limitSeconds} s peers allow ([limits] clock_skew_seconds): ${who}; ${detail}`,
      `synchronise both clocks: timedatectl set-ntp true (apt-get install systemd-timesyncd) here and on ${over.map((r) => r.peer.domain).join(', ')}; check with timedatectl timesync-status`)
  }
  const near = measured.filter((r) => Math.abs(r.offset as number) > limitSeconds / 2)
  if (near.length > 0) return check('clock skew', 'warn', `more than half the ${limitSeconds} s limit: ${detail}`, 'timedatectl set-ntp true here and on those peers')
  return check('clock skew', 'ok', `within ${limitSeconds} s: ${detail}`)
}
