import { spawn } from 'node:child_process'
import { createReadStream, createWriteStream, existsSync } from 'node:fs'
import { chmod, cp, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import type { Command } from 'commander'
import { callAdmin } from '../../admin/client.js'
import { DEFAULT_CONFIG_PATH, loadConfig, type Config } from '../../config/index.js'
import { BadRequestError, CenterError, ConflictError, NotRunningError } from '../../errors.js'
import { identityDir, loadIdentity } from '../../identity/files.js'
import { lookupUser, runOk } from '../../systemd/run.js'
import type { CliContext } from '../index.js'

/** manifest.json at the top of every backup archive. */
export interface BackupManifest {
  format: 1
  createdAt: string
  uuid: string
  domain: string
  database: 'postgresql' | 'pglite'
  /** where the config was; restore puts it back there unless --config says otherwise */
  configPath: string | null
}

// archive layout: manifest.json, config/center.toml, identity/…, database.dump | pgdata/…
const MANIFEST = 'manifest.json'
const DUMP = 'database.dump'

export function registerBackupCommands (program: Command, ctx: CliContext): void {
  program.command('backup <file>')
    .description('write config, identity and a database dump to FILE (.tar.gz, mode 0600: it holds the private keys)')
    .action(async (file: string) => {
      const m = await backup(ctx.config(), resolve(file))
      ctx.out.print(`backup of peer ${m.uuid} (${m.domain}), ${m.database} database, written to ${resolve(file)}`, { file: resolve(file), ...m })
    })

  program.command('restore <file>')
    .description('put back config, identity and database from a backup; centerd must be stopped')
    .action(async (file: string) => {
      const r = await restore(resolve(file), ctx.configPath())
      ctx.out.print([
        `restored peer ${r.manifest.uuid} (${r.manifest.domain}) from the backup of ${r.manifest.createdAt}.`,
        ...r.movedAside.map((p) => `kept the previous ${p}`),
        'Start centerd (systemctl start centerd). Sessions with peers may be older than theirs: they re-key by themselves on first contact.'
      ].join('\n'), r)
    })
}

async function daemonRunning (cfg: Config): Promise<boolean> {
  try {
    await callAdmin(cfg.admin.socket, 'whoami', {}, 5_000)
    return true
  } catch (err) {
    if (err instanceof NotRunningError) return false
    throw err
  }
}

// ---- PostgreSQL tools -----------------------------------------------------

/**
 * pg_dump / pg_restore as the account the URL names, when we are root and the
 * URL relies on peer authentication (no password): `centerctl setup postgres` URLs.
 */
async function pgCommand (tool: string, url: string, args: string[]): Promise<string[]> {
  const u = new URL(url)
  const role = decodeURIComponent(u.username)
  if (process.getuid?.() === 0 && role !== '' && role !== 'root' && u.password === '' && await lookupUser(role) !== null) {
    return ['runuser', '-u', role, '--', tool, ...args]
  }
  return [tool, ...args]
}

async function pipeTool (cmd: string[], io: { stdin?: string, stdout?: string }): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['pipe', io.stdout === undefined ? 'ignore' : 'pipe', 'pipe'] })
    let err = ''
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d })
    if (io.stdout !== undefined) child.stdout?.pipe(createWriteStream(io.stdout, { mode: 0o600 }))
    if (io.stdin !== undefined) createReadStream(io.stdin).pipe(child.stdin as NodeJS.WritableStream)
    else child.stdin?.end()
    child.once('error', reject)
    child.once('close', (code) => {
      if (code === 0) resolve()
      else reject(new CenterError(`${cmd.join(' ').replace(/postgres(ql)?:\/\/\S+/g, 'URL')} failed (exit ${String(code)}): ${err.trim()}`))
    })
  })
}

// ---- backup ---------------------------------------------------------------

export async function backup (cfg: Config, file: string): Promise<BackupManifest> {
  const id = await loadIdentity(cfg.stateDir)
  const embedded = cfg.database.url === null
  if (embedded && await daemonRunning(cfg)) {
    throw new ConflictError('the embedded PGlite database cannot be copied while centerd runs: stop it first (systemctl stop centerd), back up, start it again')
  }
  const stage = await mkdtemp(join(tmpdir(), 'center-backup-'))
  try {
    await chmod(stage, 0o700)
    await cp(identityDir(cfg.stateDir), join(stage, 'identity'), { recursive: true, preserveTimestamps: true })
    if (cfg.configPath !== null) {
      await mkdir(join(stage, 'config'))
      await cp(cfg.configPath, join(stage, 'config/center.toml'))
    }
    if (cfg.database.url !== null) {
      await pipeTool(await pgCommand('pg_dump', cfg.database.url, ['--format=custom', '--no-owner', '--no-privileges', cfg.database.url]), { stdout: join(stage, DUMP) })
    } else if (existsSync(cfg.database.pgliteDir)) {
      await cp(cfg.database.pgliteDir, join(stage, 'pgdata'), { recursive: true, preserveTimestamps: true })
    }
    const manifest: BackupManifest = { format: 1, createdAt: new Date().toISOString(), uuid: id.uuid, domain: id.domain, database: embedded ? 'pglite' : 'postgresql', configPath: cfg.configPath }
    await writeFile(join(stage, MANIFEST), JSON.stringify(manifest, null, 2) + '\n')
    await mkdir(dirname(file), { recursive: true })
    await writeFile(file, '', { mode: 0o600 })
    await chmod(file, 0o600)
    await runOk('tar', ['-czf', file, '-C', stage, '.'])
    return manifest
  } finally {
    await rm(stage, { recursive: true, force: true })
  }
}

// ---- restore --------------------------------------------------------------

export interface RestoreResult { manifest: BackupManifest, configPath: string, stateDir: string, movedAside: string[] }

/** Move what is there out of the way (never delete a sysadmin's data); returns the new name. */
async function moveAside (path: string, stamp: string, moved: string[]): Promise<void> {
  if (!existsSync(path)) return
  const to = `${path}.before-restore-${stamp}`
  await rename(path, to)
  moved.push(`${path} as ${to}`)
}

export async function restore (file: string, configOverride: string | undefined): Promise<RestoreResult> {
  if (!existsSync(file)) throw new BadRequestError(`no backup file ${file}`)
  const stage = await mkdtemp(join(tmpdir(), 'center-restore-'))
  const moved: string[] = []
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  try {
    await runOk('tar', ['-xzf', file, '-C', stage, '--no-same-owner'])
    const manifest = JSON.parse(await readFile(join(stage, MANIFEST), 'utf8')) as BackupManifest
    if (manifest.format !== 1) throw new BadRequestError(`${file}: unknown backup format ${String(manifest.format)}`)
    const configPath = resolve(configOverride ?? manifest.configPath ?? DEFAULT_CONFIG_PATH)
    if (existsSync(join(stage, 'config/center.toml'))) {
      const incoming = await readFile(join(stage, 'config/center.toml'), 'utf8')
      if (await readFile(configPath, 'utf8').catch(() => null) !== incoming) {
        await moveAside(configPath, stamp, moved)
        await mkdir(dirname(configPath), { recursive: true })
        await writeFile(configPath, incoming, { mode: 0o640 })
      }
    }
    const cfg = loadConfig({ configPath })
    if (await daemonRunning(cfg)) throw new ConflictError('centerd is running: stop it first (systemctl stop centerd), restore, then start it')
    await restoreState(stage, cfg, manifest, stamp, moved)
    return { manifest, configPath, stateDir: cfg.stateDir, movedAside: moved }
  } finally {
    await rm(stage, { recursive: true, force: true })
  }
}

async function restoreState (stage: string, cfg: Config, manifest: BackupManifest, stamp: string, moved: string[]): Promise<void> {
  if ((cfg.database.url === null) !== (manifest.database === 'pglite')) {
    throw new BadRequestError(`the backup holds a ${manifest.database} database but ${cfg.configPath ?? 'the config'} selects ${cfg.database.url === null ? 'the embedded PGlite' : 'PostgreSQL'}`)
  }
  await mkdir(cfg.stateDir, { recursive: true, mode: 0o700 })
  const owner = await stat(cfg.stateDir)
  await moveAside(identityDir(cfg.stateDir), stamp, moved)
  await cp(join(stage, 'identity'), identityDir(cfg.stateDir), { recursive: true, preserveTimestamps: true })
  if (cfg.database.url === null) {
    await moveAside(cfg.database.pgliteDir, stamp, moved)
    if (existsSync(join(stage, 'pgdata'))) await cp(join(stage, 'pgdata'), cfg.database.pgliteDir, { recursive: true, preserveTimestamps: true })
  } else {
    // --clean drops what is there first; a missing database is `centerctl setup postgres`
    await pipeTool(await pgCommand('pg_restore', cfg.database.url, ['--clean', '--if-exists', '--no-owner', '--no-privileges', '--single-transaction', '--exit-on-error', '-d', cfg.database.url]), { stdin: join(stage, DUMP) })
  }
  // centerd runs as the state directory's owner (`center` under systemd)
  if (owner.uid !== 0 && process.getuid?.() === 0) await runOk('chown', ['-R', `${owner.uid}:${owner.gid}`, cfg.stateDir])
}
