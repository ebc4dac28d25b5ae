import { readFile, stat } from 'node:fs/promises'
import type { Command } from 'commander'
import { callAdmin } from '../../admin/client.js'
import { BadRequestError } from '../../errors.js'
import { KEY_MAX_BYTES } from '../../accounts/keys.js'
import { table } from '../output.js'
import { watchBackfill } from '../backfill.js'
import type { CliContext } from '../index.js'

/**
 * `--ssh-key` takes a key line or a file of key lines (a .pub file or an
 * authorized_keys). A file is read only up to a bound, so a huge file is
 * refused here rather than sent.
 */
export async function readKeyArgs (values: string[]): Promise<string[]> {
  const keys: string[] = []
  for (const v of values) {
    if (/^(ssh-|ecdsa-|sk-)/.test(v.trim()) || v.includes('PRIVATE KEY')) { keys.push(v); continue }
    let size: number
    try {
      size = (await stat(v)).size
    } catch {
      throw new BadRequestError(`--ssh-key ${JSON.stringify(v.slice(0, 60))} is neither a public key line nor a readable file`)
    }
    if (size > 32 * KEY_MAX_BYTES) throw new BadRequestError(`--ssh-key file ${v} is ${size} bytes; an SSH public key file is far smaller`)
    const text = await readFile(v, 'utf8')
    // a private key file is passed whole, so the daemon refuses it with the right message
    if (text.includes('PRIVATE KEY') || text.includes('PuTTY-User-Key-File')) { keys.push(text); continue }
    keys.push(...text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')))
  }
  return keys
}

const collect = (v: string, prev: string[]): string[] => [...prev, v]

export function registerUserCommands (program: Command, ctx: CliContext): void {
  const call = async (method: string, params: Record<string, unknown> = {}): Promise<any> => await callAdmin(ctx.config().admin.socket, method, params)
  const user = program.command('user').description('user accounts: the same account on every peer (LDAP + /center/users)')

  user.command('add <name>')
    .description('create an account on every peer (a signed user-add event to all of them)')
    .requiredOption('--ssh-key <file|key>', 'an SSH public key, or a file of them (repeatable)', collect, [])
    .option('--gecos <text>', 'real name')
    .option('--shell <path>', 'login shell', '/bin/bash')
    .action(async (name: string, o: { sshKey: string[], gecos?: string, shell: string }) => {
      const keys = await readKeyArgs(o.sshKey)
      const r = await call('user.add', { name, keys, gecos: o.gecos, shell: o.shell })
      ctx.out.print(`user ${String(r.name)} created (uidNumber ${String(r.uidNumber)}); sent to every peer`, r)
    })

  for (const [verb, locked] of [['lock', true], ['unlock', false]] as const) {
    user.command(`${verb} <name>`)
      .description(locked ? 'lock the account on every peer (no login, no LDAP bind)' : 'unlock the account on every peer')
      .option('--reason <text>', 'why (every peer logs it)')
      .action(async (name: string, o: { reason?: string }) => {
        const r = await call(`user.${verb}`, { name, reason: o.reason })
        ctx.out.print(`user ${name} ${verb}ed on every peer`, r)
      })
  }

  user.command('del <name>')
    .description('delete the account on every peer (LDAP entry and /center/users/NAME)')
    .action(async (name: string) => { ctx.out.print(`user ${name} deleted on every peer`, await call('user.del', { name })) })

  user.command('ban <name>')
    .description('refuse the user on this box only (LDAP lock here; nothing is sent)')
    .requiredOption('--local', 'this box only (required: a network-wide ban is `user lock`)')
    .option('--reason <text>', 'why')
    .option('--lift', 'lift the local ban instead')
    .action(async (name: string, o: { local: boolean, reason?: string, lift?: boolean }) => {
      const r = await call('user.ban', { name, local: o.local === true, reason: o.reason, unban: o.lift === true })
      ctx.out.print(o.lift === true ? `local ban on ${name} lifted` : `user ${name} banned on this box only`, r)
    })

  user.command('list')
    .description('accounts, with their state; conflicts (a name created on two peers at once) show as "lost"')
    .option('--all', 'include deleted accounts')
    .action(async (o: { all?: boolean }) => {
      const rows = (await call('user.list', { all: o.all === true })) as Array<Record<string, any>>
      const human = rows.map((r) => ({ ...r, keys: r.keys.length, bannedHere: r.bannedHere === true ? 'yes' : '', lostTo: r.lostTo === undefined ? '' : r.lostTo === null ? '?' : `${String(r.lostTo.origin)}` }))
      const conflicts = rows.filter((r) => r.state === 'lost')
      const note = conflicts.length === 0 ? '' : `\n\n${conflicts.length} conflicting request(s): the name was created on another peer first (LOSTTO); those requests were not applied.`
      ctx.out.print(table(human, ['name', 'uidNumber', 'state', 'origin', 'createdAt', 'keys', 'bannedHere', 'lostTo']) + note, rows)
    })

  user.command('show <name>')
    .description('one account: attributes, claims, lock, and the LDAP entry as this box has it')
    .action(async (name: string) => {
      const r = await call('user.show', { name })
      ctx.out.print(JSON.stringify(r, null, 2), r)
    })

  user.command('backfill')
    .description('progress of copying every account from a peer when this one joined (RFC 3)')
    .option('--wait', 'show a progress bar until it is done')
    .action(async (o: { wait?: boolean }) => {
      const s = await call('user.backfill')
      if (o.wait !== true || ctx.out.json()) { ctx.out.print(`backfill ${String(s.state)}: ${String(s.received)}/${String(s.total)} accounts from ${String(s.peer ?? '-')}`, s); return }
      const end = await watchBackfill(call)
      ctx.out.print(`backfill done: ${String(end.received)} accounts from ${String(end.peer)}`, end)
    })
}
