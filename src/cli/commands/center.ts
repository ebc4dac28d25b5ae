import type { Command } from 'commander'
import { callAdmin } from '../../admin/client.js'
import type { AdminMethods } from '../../admin/server.js'
import { NotRunningError } from '../../errors.js'
import type { CenterSync } from '../../sync/service.js'
import { table } from '../output.js'
import type { CliContext } from '../index.js'

/** The admin methods behind `centerctl center …` and `centerctl user usage` (spread into the admin socket's methods). */
export function centerAdminMethods (get: () => CenterSync | null): AdminMethods {
  const sync = (): CenterSync => {
    const s = get()
    if (s === null) throw new NotRunningError('/center sync is not enabled on this peer ([sync] enabled = true)')
    return s
  }
  return {
    'center.status': async () => sync().status(),
    'center.resync': async () => await sync().resync(),
    'user.usage': async (p) => await sync().usage(String(p.name ?? ''))
  }
}

const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(2)} MiB`

export function registerCenterCommands (program: Command, ctx: CliContext): void {
  const call = async (method: string, params: Record<string, unknown> = {}): Promise<any> => await callAdmin(ctx.config().admin.socket, method, params)
  const center = program.command('center').description('the /center tree and its live sync')

  center.command('status')
    .description('per peer: last sync, backlog, errors')
    .action(async () => {
      const r = await call('center.status')
      const rows = r.peers.map((p: Record<string, unknown>) => ({ ...p, lastError: p.lastError ?? p.lastReceiveError ?? '' }))
      const lines = [table(rows, ['domain', 'lastSync', 'backlog', 'pushing', 'pushes', 'failures', 'lastReceived', 'lastError'])]
      for (const x of r.refusals) lines.push(`not sent: ${String(x.tree)}: ${String(x.reason)}`)
      ctx.out.print(lines.join('\n'), r)
    })

  center.command('resync')
    .description('rescan every synced tree now and push it to every peer')
    .action(async () => { ctx.out.print('rescan queued', await call('center.resync')) })

  const user = program.commands.find((c) => c.name() === 'user') ?? program.command('user').description('user accounts')
  user.command('usage <name>')
    .description('bytes used in /center/users/NAME against its quota')
    .action(async (name: string) => {
      const r = await call('user.usage', { name })
      ctx.out.print(`${String(r.name)}: ${mib(r.bytes)} of ${mib(r.limit)} in ${String(r.files)} files${r.over === true ? ' (OVER QUOTA: not synced)' : ''}`, r)
    })
}
