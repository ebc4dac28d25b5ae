import type { Command } from 'commander'
import { callAdmin } from '../../admin/client.js'
import type { AdminMethods } from '../../admin/server.js'
import { BadRequestError } from '../../errors.js'
import type { ServiceRecord, ServiceRegistry } from '../../services/registry.js'

export interface ServiceCommandContext {
  adminSocket: () => string
  json: () => boolean
  print: (human: string, data: unknown) => void
}

/** `--receive a,b` → ['a', 'b']; an empty string means "none". */
function splitList (v: string): string[] {
  return v.split(',').map((s) => s.trim()).filter((s) => s !== '')
}

function describe (s: { name: string, receive: string[], send: string[], state?: string, delivered?: number }): string {
  const lines = [
    `${s.name}${s.state === undefined ? '' : ` (${s.state})`}`,
    `  receive: ${s.receive.length === 0 ? '-' : s.receive.join(', ')}`,
    `  send:    ${s.send.length === 0 ? '-' : s.send.join(', ')}`
  ]
  if (s.delivered !== undefined) lines.push(`  delivered up to inbox id ${s.delivered}`)
  return lines.join('\n')
}

export function registerServiceCommands (program: Command, ctx: ServiceCommandContext): void {
  const call = async (method: string, params: Record<string, unknown> = {}): Promise<any> => await callAdmin(ctx.adminSocket(), method, params)
  const cmd = program.command('service').description('local services: who may connect, and which events each may receive and send')

  cmd.command('add').description('register a service and print its token (shown once)')
    .argument('<name>', 'service name: lowercase letters, digits and dashes')
    .option('--receive <events>', 'comma-separated event names it may receive', '')
    .option('--send <events>', 'comma-separated event names it may send', '')
    .action(async (name: string, o: { receive: string, send: string }) => {
      const res = await call('service.add', { name, receive: splitList(o.receive), send: splitList(o.send) })
      ctx.print(`${describe(res)}\ntoken: ${res.token as string}\nStore it now: only its SHA-256 is kept, it cannot be shown again.`, res)
    })

  cmd.command('list').description('list services and their grants')
    .action(async () => {
      const res = await call('service.list') as ServiceRecord[]
      ctx.print(res.length === 0 ? 'no services' : res.map(describe).join('\n'), res)
    })

  cmd.command('update').description('replace the receive and/or send grants; live connections apply them at once')
    .argument('<name>', 'service name')
    .option('--receive <events>', 'comma-separated event names it may receive (replaces the list)')
    .option('--send <events>', 'comma-separated event names it may send (replaces the list)')
    .action(async (name: string, o: { receive?: string, send?: string }) => {
      if (o.receive === undefined && o.send === undefined) throw new BadRequestError('give --receive and/or --send')
      const params: Record<string, unknown> = { name }
      if (o.receive !== undefined) params.receive = splitList(o.receive)
      if (o.send !== undefined) params.send = splitList(o.send)
      const res = await call('service.update', params)
      ctx.print(describe(res), res)
    })

  cmd.command('revoke').description('revoke the token; live connections are closed')
    .argument('<name>', 'service name')
    .action(async (name: string) => {
      const res = await call('service.revoke', { name })
      ctx.print(`service ${name} revoked`, res)
    })
}

// ---- the daemon side ----

function str (params: Record<string, unknown>, key: string): string {
  const v = params[key]
  if (typeof v !== 'string') throw new BadRequestError(`params.${key} must be a string`)
  return v
}

function list (params: Record<string, unknown>, key: string, required: boolean): string[] | undefined {
  const v = params[key]
  if (v === undefined && !required) return undefined
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new BadRequestError(`params.${key} must be a list of event names`)
  return v as string[]
}

/** A record as the admin socket returns it (dates as ISO strings, no token hash). */
function wire (r: ServiceRecord): Record<string, unknown> {
  return { ...r, createdAt: r.createdAt.toISOString(), updatedAt: r.updatedAt.toISOString() }
}

/** The admin methods behind `centerctl service …`; the daemon merges them into its map. */
export function serviceAdminMethods (registry: ServiceRegistry): AdminMethods {
  return {
    'service.add': async (p) => await registry.add(str(p, 'name'), {
      receive: list(p, 'receive', false) ?? [],
      send: list(p, 'send', false) ?? []
    }),
    'service.list': async () => (await registry.list()).map(wire),
    'service.update': async (p) => {
      const receive = list(p, 'receive', false)
      const send = list(p, 'send', false)
      if (receive === undefined && send === undefined) throw new BadRequestError('give receive and/or send')
      return wire(await registry.update(str(p, 'name'), { receive, send }))
    },
    'service.revoke': async (p) => wire(await registry.revoke(str(p, 'name')))
  }
}
