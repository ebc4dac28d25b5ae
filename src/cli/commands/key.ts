import type { Command } from 'commander'
import { callAdmin } from '../../admin/client.js'
import type { CliContext } from '../index.js'

const ROTATE_TIMEOUT_MS = 60_000

export function registerKeyCommands (program: Command, ctx: CliContext): void {
  const key = program.command('key').description('this peer\'s OpenPGP key')

  key.command('rotate')
    .description('make a new OpenPGP key and announce it to every peer, signed by the old one (which peers accept until limits.max_ttl_seconds)')
    .action(async () => {
      const r = await callAdmin(ctx.config().admin.socket, 'key.rotate', {}, ROTATE_TIMEOUT_MS)
      const peers = (r.announcedTo as string[]).length
      ctx.out.print(`new key ${String(r.fingerprint)} (was ${String(r.previous)}); announced to ${peers} peer(s). \`centerctl key status\` shows who has not confirmed yet.\nBack up the new key: centerctl backup FILE`, r)
    })

  key.command('status')
    .description('our fingerprint, and the peers that have not confirmed our newest key yet')
    .action(async () => {
      const r = await callAdmin(ctx.config().admin.socket, 'key.status', {})
      const waiting = r.waitingFor as string[]
      ctx.out.print(`fingerprint ${String(r.fingerprint)}\n${waiting.length === 0 ? 'every peer has it' : `waiting for: ${waiting.join(', ')}`}`, r)
    })
}
