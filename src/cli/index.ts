import { Command, CommanderError } from 'commander'
import { loadConfig, type Config } from '../config/index.js'
import { makeOutput, type Output } from './output.js'
import { registerInitCommands } from './commands/init.js'
import { registerPeerCommands, registerStatusCommand } from './commands/peer.js'
import { registerServiceCommands } from './commands/service.js'
import { registerSetupCommands } from './commands/setup.js'
import { registerDoctorCommand } from './commands/doctor.js'
import { registerBackupCommands } from './commands/backup.js'
import { registerUserCommands } from './commands/user.js'
import { registerCenterCommands } from './commands/center.js'
import { registerKeyCommands } from './commands/key.js'

/** What every command gets: the global options, read lazily. */
export interface CliContext {
  configPath: () => string | undefined
  config: () => Config
  out: Output
}

export function buildProgram (): Command {
  const program = new Command('centerctl')
    .description('the sysadmin\'s command line for a center peer')
    .option('--config <path>', 'config file (default /etc/center/center.toml)')
    .option('--json', 'print JSON, for scripts')
    .showHelpAfterError()
  const opts = (): { config?: string, json?: boolean } => program.opts()
  let cfg: Config | null = null
  const ctx: CliContext = {
    configPath: () => opts().config,
    config: () => (cfg ??= loadConfig({ configPath: opts().config })),
    out: makeOutput(() => opts().json === true)
  }
  registerInitCommands(program, ctx)
  registerStatusCommand(program, ctx)
  registerPeerCommands(program, ctx)
  registerServiceCommands(program, { adminSocket: () => ctx.config().admin.socket, json: ctx.out.json, print: ctx.out.print })
  registerSetupCommands(program, ctx)
  registerDoctorCommand(program, ctx)
  registerBackupCommands(program, ctx)
  registerUserCommands(program, ctx)
  registerCenterCommands(program, ctx)
  registerKeyCommands(program, ctx)
  return program
}

export async function main (argv: string[]): Promise<void> {
  const program = buildProgram().exitOverride()
  try {
    await program.parseAsync(argv)
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2
      return
    }
    const e = err as Error & { code?: string }
    if (program.opts().json === true) process.stdout.write(JSON.stringify({ error: { name: e.name, code: e.code ?? 'internal', message: e.message } }) + '\n')
    process.stderr.write(`centerctl: ${e.name}: ${e.message}\n`)
    process.exitCode = 1
  }
}
