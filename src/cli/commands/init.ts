import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import type { Command } from 'commander'
import { DEFAULT_CONFIG_PATH, loadConfig, parseHostPort } from '../../config/index.js'
import { createIdentity, identityExists, loadIdentity } from '../../identity/files.js'
import { callAdmin } from '../../admin/client.js'
import { ConfigError, NotRunningError } from '../../errors.js'
import type { CliContext } from '../index.js'

interface InitOpts { domain: string, admin: string, listen?: string, advertise?: string, databaseUrl?: string, stateDir?: string }

const q = (s: string): string => JSON.stringify(s)

/** The TOML `centerctl init` writes: only what was given; everything else keeps its default. */
function configText (o: InitOpts): string {
  const lines = ['# center peer configuration (every key: docs/admin/quickstart.md)']
  if (o.stateDir !== undefined) lines.push(`state_dir = ${q(o.stateDir)}`)
  lines.push('', '[peer]', `domain = ${q(o.domain)}`, `admin = ${q(o.admin)}`)
  if (o.listen !== undefined) lines.push(`listen = ${q(o.listen)}`)
  if (o.advertise !== undefined) lines.push(`advertise = ${q(o.advertise)}`)
  if (o.databaseUrl !== undefined) lines.push('', '[database]', `url = ${q(o.databaseUrl)}`)
  return lines.join('\n') + '\n'
}

export function registerInitCommands (program: Command, ctx: CliContext): void {
  program.command('init')
    .description('create the config file (if missing) and this peer\'s identity: UUID, OpenPGP key, Signal keys')
    .requiredOption('--domain <domain>', 'this box\'s domain name')
    .requiredOption('--admin <user>', 'the sysadmin\'s user name')
    .option('--listen <addr>', 'HOST:PORT to listen on for peers')
    .option('--advertise <addr>', 'HOST:PORT other peers dial')
    .option('--database-url <url>', 'postgres://… (default: embedded PGlite)')
    .option('--state-dir <dir>', 'where keys and data live (default: /var/lib/center for /etc/center/center.toml, else beside the config file)')
    .action(async (o: InitOpts) => {
      if (o.listen !== undefined) parseHostPort(o.listen, '--listen')
      if (o.advertise !== undefined) parseHostPort(o.advertise, '--advertise')
      const path = resolve(ctx.configPath() ?? DEFAULT_CONFIG_PATH)
      if (!existsSync(path)) {
        await mkdir(dirname(path), { recursive: true })
        await writeFile(path, configText(o), { mode: 0o640 })
      }
      const cfg = loadConfig({ configPath: path })
      if (cfg.peer.domain !== o.domain) throw new ConfigError(`${path} says domain ${cfg.peer.domain}, not ${o.domain}; edit the file or use another --config`)
      const id = identityExists(cfg.stateDir) ? await loadIdentity(cfg.stateDir) : await createIdentity(cfg.stateDir, o.domain)
      const data = { config: path, stateDir: cfg.stateDir, uuid: id.uuid, domain: id.domain, fingerprint: id.fingerprint }
      ctx.out.print(`peer ${id.uuid} (${id.domain})\nconfig:      ${path}\nstate:       ${cfg.stateDir}\nfingerprint: ${id.fingerprint}`, data)
    })

  program.command('whoami')
    .description('print this peer\'s UUID, domain, address, OpenPGP fingerprint and public key')
    .action(async () => {
      const cfg = ctx.config()
      let data: Record<string, unknown>
      try {
        data = await callAdmin(cfg.admin.socket, 'whoami')
      } catch (err) {
        if (!(err instanceof NotRunningError)) throw err
        // the daemon is down: identity files are enough, the address comes from the config
        const id = await loadIdentity(cfg.stateDir)
        const l = cfg.peer.listen
        data = { uuid: id.uuid, domain: id.domain, address: cfg.peer.advertise ?? `${l.host}:${l.port}`, fingerprint: id.fingerprint, publicKey: id.publicArmored }
      }
      ctx.out.print(`uuid:        ${String(data.uuid)}\ndomain:      ${String(data.domain)}\naddress:     ${String(data.address)}\nfingerprint: ${String(data.fingerprint)}\n${String(data.publicKey)}`, data)
    })
}
