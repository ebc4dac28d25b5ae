import { SingleBar, Presets } from 'cli-progress'

/** `user.backfill` as the admin socket returns it. */
export interface BackfillView { state: string, peer: string | null, received: number, total: number }

type Call = (method: string, params?: Record<string, unknown>) => Promise<any>

const WIDTH = 30

/** One line with a bar, for `centerctl status` (a snapshot, not a live bar). */
export function backfillLine (s: BackfillView): string {
  if (s.state === 'done') return `accounts backfill done: ${s.received} accounts from ${s.peer ?? '-'}`
  if (s.state === 'waiting') return 'accounts backfill waiting: no active peer to copy the accounts from yet'
  const filled = s.total > 0 ? Math.min(WIDTH, Math.round(WIDTH * s.received / s.total)) : 0
  return `accounts backfill [${'#'.repeat(filled)}${'-'.repeat(WIDTH - filled)}] ${s.received}/${s.total} from ${s.peer ?? '-'} (joining)`
}

/** A live progress bar on stderr until the backfill is done; returns the final status. */
export async function watchBackfill (call: Call, everyMs = 250): Promise<BackfillView> {
  let s: BackfillView = await call('user.backfill')
  const bar = new SingleBar({ format: 'accounts backfill [{bar}] {value}/{total} ({state})', hideCursor: true }, Presets.shades_classic)
  bar.start(Math.max(1, s.total), s.received, { state: s.state })
  while (s.state !== 'done') {
    await new Promise((resolve) => setTimeout(resolve, everyMs))
    s = await call('user.backfill')
    bar.setTotal(Math.max(1, s.total, s.received))
    bar.update(s.received, { state: s.state })
  }
  bar.stop()
  return s
}
