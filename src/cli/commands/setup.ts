import { existsSync } from 'node:fs'
import { chmod, chown, copyFile, lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import { BadRequestError, CenterError } from '../../errors.js'
import { PACKAGE_ROOT, lookupGroup, lookupUser, runOk, systemdRunning } from '../../systemd/run.js'
import type { CliContext } from '../index.js'
import { setupLdap } from '../../setup/ldap.js'
import { setupSsh } from '../../setup/ssh.js'

/** One directory of the /center tree. tmpfiles.d/center.conf lists the same. */
export interface LayoutEntry {
  /** relative to the /center root; '' is the root itself */
  path: string
  mode: number
  owner: 'root' | 'center'
  group: 'root' | 'center'
}

export const CENTER_LAYOUT: readonly LayoutEntry[] = [
  { path: '', mode: 0o755, owner: 'root', group: 'root' },
  { path: 'home', mode: 0o755, owner: 'root', group: 'root' },
  { path: 'users', mode: 0o755, owner: 'root', group: 'root' },
  { path: 'services', mode: 0o775, owner: 'root', group: 'center' },
  { path: 'proposals', mode: 0o775, owner: 'center', group: 'center' },
  { path: 'shared', mode: 0o2775, owner: 'root', group: 'center' }
]

const NAME = /^[a-z_][a-z0-9_]{0,62}$/
const SYSTEM_ACCOUNT = 'center'

/** What a setup step did, for the sysadmin and for --json. */
export interface Step { action: 'created' | 'changed' | 'unchanged' | 'ran' | 'skipped', what: string }

const line = (s: Step): string => `${s.action.padEnd(9)} ${s.what}`

export function registerSetupCommands (program: Command, ctx: CliContext): void {
  const setup = program.command('setup').description('prepare this box: the /center tree, PostgreSQL, the systemd units (each safe to re-run)')

  setup.command('center')
    .description('lay out the /center tree from center-skeleton/ with its owners and modes')
    .option('--root <dir>', 'the /center root', '/center')
    .option('--skeleton <dir>', 'the skeleton to copy', join(PACKAGE_ROOT, 'center-skeleton'))
    .action(async (o: { root: string, skeleton: string }) => {
      const steps = await setupCenter(resolve(o.root), resolve(o.skeleton))
      ctx.out.print(steps.map(line).join('\n'), { root: resolve(o.root), steps })
    })

  setup.command('postgres')
    .description('create the database and role on the local PostgreSQL cluster (peer authentication) and print the config line')
    .option('--db <name>', 'database name', 'center')
    .option('--role <name>', 'role name; centerd connects as the system account of the same name', SYSTEM_ACCOUNT)
    .option('--socket-dir <dir>', 'the cluster\'s socket directory', '/var/run/postgresql')
    .action(async (o: { db: string, role: string, socketDir: string }) => {
      const r = await setupPostgres(o.db, o.role, o.socketDir)
      ctx.out.print([...r.steps.map(line), '', 'Put this in /etc/center/center.toml:', '[database]', `url = ${JSON.stringify(r.url)}`].join('\n'), r)
    })

  setup.command('units')
    .description('install the systemd units, sysusers.d and tmpfiles.d files, create the account and directories, enable centerd')
    .option('--prefix <dir>', 'where center is installed (the units run PREFIX/dist/src/bin/…)', PACKAGE_ROOT)
    .option('--target-root <dir>', 'install into this root file system (an image) instead of /', '/')
    .option('--no-enable', 'do not enable centerd.service')
    .action(async (o: { prefix: string, targetRoot: string, enable: boolean }) => {
      const steps = await setupUnits({ prefix: resolve(o.prefix), root: resolve(o.targetRoot), enable: o.enable, node: process.execPath, stateDir: stateDirOf(ctx) })
      ctx.out.print(steps.map(line).join('\n'), { steps })
    })

  setup.command('ldap')
    .description('build a local slapd (own CA, TLS, ppolicy lockout, openssh-lpk) and print the [ldap] config lines')
    .option('--dir <dir>', 'where its config, data and certificates live (not under the 0700 /var/lib/center: slapd runs as openldap)', '/var/lib/center-slapd')
    .option('--suffix <dn>', 'the base DN', 'dc=center,dc=local')
    .option('--max-failures <n>', 'failed binds before an account is locked', '3')
    .option('--port <n>', 'the 127.0.0.1 port it listens on', '389')
    .option('--password-file <file>', 'where the random admin password goes (0600)', '/etc/center/ldap.password')
    .option('--start', 'start slapd directly, without systemd')
    .action(async (o: { dir: string, suffix: string, maxFailures: string, port: string, passwordFile: string, start?: boolean }) => {
      const r = await setupLdap({ dir: resolve(o.dir), suffix: o.suffix, maxFailures: Number(o.maxFailures), port: Number(o.port), passwordFile: resolve(o.passwordFile), start: o.start === true })
      ctx.out.print([...r.steps.map(line), '', 'Put this in /etc/center/center.toml:', ...r.toml].join('\n'), r)
    })

  setup.command('ssh')
    .description('create the sync account peers push as and its sshd snippet (checked with sshd -t)')
    .option('--user <name>', 'the sync account ([sync] ssh_user)', 'center-sync')
    .option('--root <dir>', 'the /center root', '/center')
    .option('--sshd-dir <dir>', 'where the sshd snippet goes', '/etc/ssh/sshd_config.d')
    .action(async (o: { user: string, root: string, sshdDir: string }) => {
      const home = join(stateDirOf(ctx) ?? '/var/lib/center', 'sync-home')
      const steps = await setupSsh({ user: o.user, root: resolve(o.root), sshdDir: resolve(o.sshdDir), home })
      ctx.out.print(steps.map(line).join('\n'), { steps })
    })
}

function stateDirOf (ctx: CliContext): string | null {
  try {
    return ctx.config().stateDir
  } catch {
    return null
  }
}

// ---- setup center -----------------------------------------------------------

async function ids (): Promise<{ root: number, center: { uid: number, gid: number } | null }> {
  const user = await lookupUser(SYSTEM_ACCOUNT)
  const gid = await lookupGroup(SYSTEM_ACCOUNT)
  return { root: 0, center: user === null || gid === null ? null : { uid: user.uid, gid } }
}

/** Make the /center tree match CENTER_LAYOUT and copy the skeleton's files that are missing. */
export async function setupCenter (root: string, skeleton: string): Promise<Step[]> {
  if (!existsSync(skeleton)) throw new BadRequestError(`no skeleton at ${skeleton} (use --skeleton)`)
  const steps: Step[] = []
  let who = await ids()
  if (who.center === null) {
    steps.push(...await createAccount('/', join(PACKAGE_ROOT, 'systemd/sysusers.d/center.conf')))
    who = await ids()
    if (who.center === null) throw new CenterError(`there is no \`${SYSTEM_ACCOUNT}\` account and systemd-sysusers could not create it`)
  }
  const center = who.center
  for (const d of CENTER_LAYOUT) {
    const uid = d.owner === 'center' ? center.uid : 0
    const gid = d.group === 'center' ? center.gid : 0
    steps.push(await ensureDir(join(root, d.path), d.mode, uid, gid, `${d.owner}:${d.group}`))
  }
  steps.push(...await copyMissing(skeleton, root))
  return steps
}

async function ensureDir (path: string, mode: number, uid: number, gid: number, names: string): Promise<Step> {
  const desc = `${path} (${mode.toString(8).padStart(4, '0')} ${names})`
  const st = await lstat(path).catch(() => null)
  if (st !== null && !st.isDirectory()) throw new BadRequestError(`${path} exists and is not a directory`)
  if (st === null) await mkdir(path, { recursive: true })
  const same = st !== null && (st.mode & 0o7777) === mode && st.uid === uid && st.gid === gid
  if (same) return { action: 'unchanged', what: desc }
  // chown first: it clears the setgid bit, chmod puts it back
  await chown(path, uid, gid)
  await chmod(path, mode)
  return { action: st === null ? 'created' : 'changed', what: desc }
}

/** Files from the skeleton that are not in the tree yet; never overwrites a sysadmin's edit. */
async function copyMissing (from: string, to: string): Promise<Step[]> {
  const steps: Step[] = []
  for (const e of await readdir(from, { withFileTypes: true })) {
    if (e.name === '.keep') continue
    const src = join(from, e.name)
    const dst = join(to, e.name)
    if (e.isDirectory()) {
      if (!existsSync(dst)) await mkdir(dst, { mode: 0o755 })
      steps.push(...await copyMissing(src, dst))
    } else if (e.isFile() && !existsSync(dst)) {
      await copyFile(src, dst)
      await chmod(dst, 0o644)
      steps.push({ action: 'created', what: dst })
    }
  }
  return steps
}

// ---- setup postgres ---------------------------------------------------------

const PSQL_SETUP = `
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \\gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'role') \\gexec
SELECT 'role=' || (SELECT count(*) FROM pg_roles WHERE rolname = :'role') || ' db=' || (SELECT count(*) FROM pg_database WHERE datname = :'db');
`

async function psqlAsPostgres (args: string[], input?: string): Promise<string> {
  const asPostgres = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : []
  const cmd = [...asPostgres, 'psql', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', ...args]
  return await runOk(cmd[0] as string, cmd.slice(1), input === undefined ? {} : { input })
}

/**
 * Create the role (LOGIN, no password) and the database it owns. Peer
 * authentication on the local socket lets the `center` system account in as
 * the `center` role, so there is no password to store or leak.
 */
export async function setupPostgres (db: string, role: string, socketDir: string): Promise<{ url: string, steps: Step[] }> {
  if (!NAME.test(db)) throw new BadRequestError(`--db ${JSON.stringify(db)}: use lower-case letters, digits and _`)
  if (!NAME.test(role)) throw new BadRequestError(`--role ${JSON.stringify(role)}: use lower-case letters, digits and _`)
  await psqlAsPostgres(['-c', 'select 1']).catch((err: Error) => {
    throw new CenterError(`no local PostgreSQL cluster answers (${err.message}); install one with \`apt-get install postgresql\` and start it (\`systemctl start postgresql\`)`)
  })
  const existed = await psqlAsPostgres(['-v', `role=${role}`, '-v', `db=${db}`, '-f', '-'], `SELECT (SELECT count(*) FROM pg_roles WHERE rolname = :'role') || ',' || (SELECT count(*) FROM pg_database WHERE datname = :'db');\n`)
  const [hadRole, hadDb] = existed.trim().split(',').map((n) => n === '1')
  const out = await psqlAsPostgres(['-v', `role=${role}`, '-v', `db=${db}`, '-f', '-'], PSQL_SETUP)
  if (!out.includes('role=1 db=1')) throw new CenterError(`PostgreSQL did not create role ${role} and database ${db}: ${out.trim()}`)
  const steps: Step[] = [
    { action: hadRole === true ? 'unchanged' : 'created', what: `role ${role} (LOGIN, peer authentication)` },
    { action: hadDb === true ? 'unchanged' : 'created', what: `database ${db} owned by ${role}` }
  ]
  return { url: `postgresql://${role}@localhost/${db}?host=${socketDir}`, steps }
}

// ---- setup units ------------------------------------------------------------

export interface UnitsOptions {
  /** where the package is: units are read from PREFIX/systemd and run PREFIX/dist */
  prefix: string
  /** '/' or an image to install into */
  root: string
  enable: boolean
  /** the node binary the units should run */
  node: string
  /** the configured state_dir, handed to the `center` account if it is /var/lib/center */
  stateDir: string | null
}

const INSTALLS: Array<{ from: string, to: string, unit: boolean }> = [
  { from: 'systemd/centerd.service', to: 'etc/systemd/system/centerd.service', unit: true },
  { from: 'systemd/center-service@.service', to: 'etc/systemd/system/center-service@.service', unit: true },
  { from: 'systemd/sysusers.d/center.conf', to: 'etc/sysusers.d/center.conf', unit: false },
  { from: 'systemd/tmpfiles.d/center.conf', to: 'etc/tmpfiles.d/center.conf', unit: false },
  { from: 'systemd/center.toml.example', to: 'etc/center/center.toml.example', unit: false }
]

/** The units name /usr/lib/center and /usr/bin/node; point them at this install. */
function adapt (text: string, o: UnitsOptions): string {
  return text.replaceAll('/usr/lib/center/', `${o.prefix}/`).replaceAll('/usr/bin/node ', `${o.node} `)
}

async function installFile (src: string, dst: string, transform: (s: string) => string): Promise<Step> {
  const text = transform(await readFile(src, 'utf8'))
  const old = await readFile(dst, 'utf8').catch(() => null)
  if (old === text) return { action: 'unchanged', what: dst }
  await mkdir(resolve(dst, '..'), { recursive: true })
  await writeFile(dst, text, { mode: 0o644 })
  return { action: old === null ? 'created' : 'changed', what: dst }
}

async function createAccount (root: string, conf: string): Promise<Step[]> {
  const args = [...(root === '/' ? [] : [`--root=${root}`]), conf]
  await runOk('systemd-sysusers', args)
  return [{ action: 'ran', what: `systemd-sysusers ${args.join(' ')}` }]
}

/** Install the units and their companions; run sysusers/tmpfiles; reload and enable when systemd runs. */
export async function setupUnits (o: UnitsOptions): Promise<Step[]> {
  const src = join(o.prefix, 'systemd')
  if (!existsSync(join(src, 'centerd.service'))) throw new BadRequestError(`no units in ${src} (use --prefix)`)
  const steps: Step[] = []
  for (const f of INSTALLS) steps.push(await installFile(join(o.prefix, f.from), join(o.root, f.to), f.unit ? (s) => adapt(s, o) : (s) => s))
  const inRoot = o.root === '/' ? [] : [`--root=${o.root}`]
  // a file given on the command line is read as is, even with --root
  steps.push(...await createAccount(o.root, join(o.root, 'etc/sysusers.d/center.conf')))
  const tmpfiles = join(o.root, 'etc/tmpfiles.d/center.conf')
  await runOk('systemd-tmpfiles', ['--create', ...inRoot, tmpfiles])
  steps.push({ action: 'ran', what: `systemd-tmpfiles --create${inRoot.map((a) => ` ${a}`).join('')} ${tmpfiles}` })
  if (o.root === '/' && o.stateDir === '/var/lib/center') steps.push(...await handOver(o.stateDir))
  const live = o.root === '/' && systemdRunning()
  if (live) {
    await runOk('systemctl', ['daemon-reload'])
    steps.push({ action: 'ran', what: 'systemctl daemon-reload' })
  } else {
    steps.push({ action: 'skipped', what: 'systemctl daemon-reload (systemd is not running here)' })
  }
  if (o.enable) {
    await runOk('systemctl', [...inRoot, 'enable', 'centerd.service'])
    steps.push({ action: 'ran', what: `systemctl${o.root === '/' ? '' : ` --root=${o.root}`} enable centerd.service` })
  }
  return steps
}

/** `centerctl init` ran as root; centerd runs as `center`: give it its state. */
async function handOver (stateDir: string): Promise<Step[]> {
  if (!existsSync(stateDir)) return []
  await runOk('chown', ['-R', `${SYSTEM_ACCOUNT}:${SYSTEM_ACCOUNT}`, stateDir])
  return [{ action: 'ran', what: `chown -R ${SYSTEM_ACCOUNT}:${SYSTEM_ACCOUNT} ${stateDir}` }]
}
