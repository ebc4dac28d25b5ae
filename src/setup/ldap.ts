import { existsSync } from 'node:fs'
import { chmod, chown, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { dirname, join } from 'node:path'
import { BadRequestError, CenterError } from '../errors.js'
import { lookupGroup, lookupUser, run, runOk } from '../systemd/run.js'

/**
 * `centerctl setup ldap`: a local slapd for a box that has none, built as the
 * test harness builds its throwaway one (HARNESS.md §1, test/_util/slapd.ts):
 * a CA made on the box, cn=config loaded offline with slapadd, back_mdb, the
 * ppolicy overlay locking an account after N bad binds, the openssh-lpk
 * schema. The admin password is random, hashed into the config and written
 * 0600 to the file `[ldap] password_file` names.
 *
 * back_mdb runs with `nometasync`: one fsync per commit instead of two (the
 * meta page is flushed by the next commit). LMDB keeps the database intact;
 * a power loss may undo the last commit, and centerd re-makes a missing or
 * leftover entry from the claim log at start (AccountsService). This takes a
 * backfill from about 440 to about 530 accounts/s (`npm run bench accounts`).
 */

export interface LdapSetupOptions {
  /** everything of this slapd lives here: tls/, slapd.d/, data/, run/ */
  dir: string
  suffix: string
  maxFailures: number
  port: number
  passwordFile: string
  /** start slapd directly (no systemd), for tests and boxes without it */
  start: boolean
}

export interface LdapStep { action: 'created' | 'changed' | 'unchanged' | 'ran' | 'skipped', what: string }

export interface LdapSetupResult {
  steps: LdapStep[]
  /** the [ldap] lines for /etc/center/center.toml */
  toml: string[]
  pid: number | null
}

/** openssh-lpk, as test/_util/slapd.ts loads it: sshPublicKey on an auxiliary class. */
export const OPENSSH_LPK_LDIF = `dn: cn=openssh-lpk,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: openssh-lpk
olcAttributeTypes: ( 1.3.6.1.4.1.24552.500.1.1.1.13 NAME 'sshPublicKey' DESC 'OpenSSH public key' EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
olcObjectClasses: ( 1.3.6.1.4.1.24552.500.1.1.2.0 NAME 'ldapPublicKey' SUP top AUXILIARY DESC 'OpenSSH LPK objectclass' MAY ( sshPublicKey $ uid ) )
`

const SUFFIX = /^dc=[a-z0-9-]+(,dc=[a-z0-9-]+)*$/i

export const ldapPaths = (dir: string): { tls: string, conf: string, data: string, run: string, pidFile: string, done: string } => ({
  tls: join(dir, 'tls'),
  conf: join(dir, 'slapd.d'),
  data: join(dir, 'data'),
  run: join(dir, 'run'),
  pidFile: join(dir, 'run', 'slapd.pid'),
  // slapadd -n0 writes this; its presence means the config is complete (it is renamed in last)
  done: join(dir, 'slapd.d', 'cn=config.ldif')
})

export const adminDn = (suffix: string): string => `cn=admin,${suffix}`

function configLdif (dir: string, suffix: string, rootPwHash: string): string {
  const p = ldapPaths(dir)
  return `dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: ${p.pidFile}
olcArgsFile: ${join(p.run, 'slapd.args')}
olcLogLevel: none
olcTLSCACertificateFile: ${p.tls}/ca.crt
olcTLSCertificateFile: ${p.tls}/server.crt
olcTLSCertificateKeyFile: ${p.tls}/server.key

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: ppolicy

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/nis.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

${OPENSSH_LPK_LDIF}
dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcSuffix: ${suffix}
olcRootDN: ${adminDn(suffix)}
olcRootPW: ${rootPwHash}
olcDbDirectory: ${p.data}
olcDbMaxSize: 1073741824
olcDbEnvFlags: nometasync
olcDbIndex: objectClass eq
olcDbIndex: uid,uidNumber,gidNumber,memberUid eq
olcDbIndex: cn eq
olcDbIndex: pwdAccountLockedTime pres
olcAccess: {0}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {1}to * by * read

dn: olcOverlay={0}ppolicy,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcPPolicyConfig
olcOverlay: {0}ppolicy
olcPPolicyDefault: cn=default,ou=policies,${suffix}
olcPPolicyUseLockout: TRUE
olcPPolicyHashCleartext: TRUE
`
}

function baseLdif (suffix: string, maxFailures: number): string {
  const dc = (suffix.split(',')[0] as string).slice(3)
  const ou = (name: string): string => `dn: ou=${name},${suffix}\nobjectClass: organizationalUnit\nou: ${name}\n`
  return [
    `dn: ${suffix}\nobjectClass: dcObject\nobjectClass: organization\no: center\ndc: ${dc}\n`,
    ou('people'), ou('groups'), ou('policies'),
    // locked until an admin clears pwdAccountLockedTime (duration 0), failures never expire
    `dn: cn=default,ou=policies,${suffix}\nobjectClass: device\nobjectClass: pwdPolicy\ncn: default\npwdAttribute: userPassword\n` +
    `pwdMaxFailure: ${maxFailures}\npwdLockout: TRUE\npwdLockoutDuration: 0\npwdFailureCountInterval: 0\n`
  ].join('\n')
}

/** A CA kept on this box (key 0600) and a server certificate for 127.0.0.1, localhost and the host name. */
async function makeCerts (tls: string): Promise<void> {
  await mkdir(tls, { recursive: true, mode: 0o755 })
  const ssl = async (args: string[]): Promise<void> => { await runOk('openssl', args.map((a) => a.startsWith('@') ? join(tls, a.slice(1)) : a)) }
  await ssl(['req', '-x509', '-newkey', 'rsa:3072', '-nodes', '-days', '3650', '-subj', `/CN=center LDAP CA ${hostname()}`, '-keyout', '@ca.key', '-out', '@ca.crt',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  await chmod(join(tls, 'ca.key'), 0o600)
  await ssl(['req', '-newkey', 'rsa:3072', '-nodes', '-subj', '/CN=localhost', '-keyout', '@server.key', '-out', '@server.csr'])
  const san = ['IP:127.0.0.1', 'DNS:localhost', ...(/^[a-z0-9.-]+$/i.test(hostname()) && hostname() !== 'localhost' ? [`DNS:${hostname()}`] : [])].join(',')
  await writeFile(join(tls, 'ext.cnf'), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`)
  await ssl(['x509', '-req', '-in', '@server.csr', '-CA', '@ca.crt', '-CAkey', '@ca.key', '-CAcreateserial', '-days', '825', '-extfile', '@ext.cnf', '-out', '@server.crt'])
  await chmod(join(tls, 'server.key'), 0o600)
}

/** The admin password: kept if the file is already there (a re-run after a failure), else a new random one. */
async function ensurePassword (file: string, steps: LdapStep[]): Promise<void> {
  if (existsSync(file)) {
    if ((await readFile(file, 'utf8')).trim() === '') throw new BadRequestError(`${file} is empty: remove it or put the admin password in it`)
    await chmod(file, 0o600)
    steps.push({ action: 'unchanged', what: `${file} (admin password, 0600)` })
    return
  }
  await mkdir(join(file, '..'), { recursive: true })
  // no newline: slappasswd -T and ldapwhoami -y take the whole file, centerd strips one
  await writeFile(file, randomBytes(24).toString('base64url'), { mode: 0o600 })
  await giveToCenter(file)
  steps.push({ action: 'created', what: `${file} (random admin password, 0600)` })
}

/** Debian's slapd runs as `openldap`: give it the config, the data and the server key, never the CA key. */
async function handToOpenldap (dir: string): Promise<LdapStep[]> {
  const user = await lookupUser('openldap')
  const gid = await lookupGroup('openldap')
  if (user === null || gid === null) return []
  const p = ldapPaths(dir)
  await runOk('chown', ['-R', `${user.uid}:${gid}`, p.conf, p.data, p.run])
  await chown(join(p.tls, 'server.key'), 0, gid)
  await chmod(join(p.tls, 'server.key'), 0o640)
  return [{ action: 'changed', what: `${p.conf}, ${p.data}, ${p.run} owned by openldap; server.key root:openldap 0640` }]
}

/** slapd drops to openldap, so every directory above --dir must let others through (/var/lib/center is 0700). */
async function checkReachable (dir: string): Promise<void> {
  if ((await lookupUser('openldap')) === null) return
  for (let d = dirname(dir); ; d = dirname(d)) {
    const st = await stat(d).catch(() => null)
    if (st !== null && (st.mode & 0o001) === 0) throw new BadRequestError(`slapd runs as openldap and cannot pass through ${d} (mode ${(st.mode & 0o777).toString(8)}): use a --dir outside it, e.g. /var/lib/center-slapd`)
    if (d === '/') return
  }
}

/** centerd (the `center` account) reads the password; root and centerctl doctor can anyway. */
async function giveToCenter (file: string): Promise<void> {
  const center = await lookupUser('center')
  if (center !== null) await chown(file, center.uid, center.gid)
}

async function build (o: LdapSetupOptions, steps: LdapStep[]): Promise<void> {
  const p = ldapPaths(o.dir)
  await checkReachable(o.dir)
  await ensurePassword(o.passwordFile, steps)
  // a half-made earlier attempt is thrown away: nothing used it yet (the config is renamed in last)
  for (const d of [p.tls, p.data, p.run, `${p.conf}.new`]) await rm(d, { recursive: true, force: true })
  await mkdir(o.dir, { recursive: true, mode: 0o755 })
  await makeCerts(p.tls)
  steps.push({ action: 'created', what: `${p.tls}: CA (ca.key 0600) and server certificate for 127.0.0.1, localhost, ${hostname()}` })
  await mkdir(p.data, { mode: 0o700 })
  await mkdir(p.run, { mode: 0o755 })
  await mkdir(`${p.conf}.new`, { mode: 0o700 })
  const hash = (await runOk('slappasswd', ['-T', o.passwordFile])).trim()
  await writeFile(join(o.dir, 'config.ldif'), configLdif(o.dir, o.suffix, hash), { mode: 0o600 })
  await runOk('slapadd', ['-q', '-n0', '-F', `${p.conf}.new`, '-l', join(o.dir, 'config.ldif')])
  await writeFile(join(o.dir, 'base.ldif'), baseLdif(o.suffix, o.maxFailures))
  await runOk('slapadd', ['-q', '-n1', '-F', `${p.conf}.new`, '-l', join(o.dir, 'base.ldif')])
  await rename(`${p.conf}.new`, p.conf)
  steps.push({ action: 'created', what: `${p.conf} (mdb ${o.suffix}, ppolicy lockout after ${o.maxFailures} failed binds, openssh-lpk)` })
  steps.push(...await handToOpenldap(o.dir))
}

async function runningPid (pidFile: string): Promise<number | null> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim())
  if (!Number.isInteger(pid) || pid <= 0) return null
  try { process.kill(pid, 0); return pid } catch { return null }
}

export const listenUrls = (dir: string, port: number): string =>
  `ldap://127.0.0.1:${port}/ ldapi://${encodeURIComponent(join(dir, 'run', 'ldapi'))}`

/** Start slapd directly (it forks and writes its pid file); for boxes without systemd and for tests. */
async function start (o: LdapSetupOptions): Promise<{ step: LdapStep, pid: number }> {
  const p = ldapPaths(o.dir)
  const already = await runningPid(p.pidFile)
  if (already !== null) return { step: { action: 'unchanged', what: `slapd running (pid ${already})` }, pid: already }
  const asOpenldap = (await lookupUser('openldap')) !== null ? ['-u', 'openldap', '-g', 'openldap'] : []
  const r = await run('slapd', ['-F', p.conf, '-h', listenUrls(o.dir, o.port), ...asOpenldap])
  if (r.code !== 0) throw new CenterError(`slapd did not start (exit ${r.code}): ${r.stderr.trim()}; is port ${o.port} free?`)
  for (let i = 0; i < 100; i++) {
    const pid = await runningPid(p.pidFile)
    if (pid !== null) return { step: { action: 'ran', what: `slapd -F ${p.conf} -h "${listenUrls(o.dir, o.port)}" (pid ${pid})` }, pid }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new CenterError(`slapd started but wrote no pid file ${p.pidFile}`)
}

export async function setupLdap (o: LdapSetupOptions): Promise<LdapSetupResult> {
  if (!SUFFIX.test(o.suffix)) throw new BadRequestError(`--suffix ${JSON.stringify(o.suffix)}: use dc=… components, e.g. dc=center,dc=local`)
  if (!Number.isInteger(o.maxFailures) || o.maxFailures < 1 || o.maxFailures > 100) throw new BadRequestError('--max-failures: a whole number from 1 to 100')
  if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new BadRequestError('--port: a whole number from 1 to 65535')
  if (!existsSync('/usr/sbin/slapd') || !existsSync('/usr/sbin/slapadd')) {
    throw new CenterError('slapd is not installed: `echo "slapd slapd/no_configuration boolean true" | debconf-set-selections && apt-get install slapd ldap-utils`')
  }
  const p = ldapPaths(o.dir)
  const steps: LdapStep[] = []
  if (existsSync(p.done)) {
    // never rebuilt: it holds the users; the sysadmin removes the directory to start over
    steps.push({ action: 'unchanged', what: `${p.conf} exists (remove ${o.dir} to build a new slapd)` })
  } else {
    await build(o, steps)
  }
  let pid: number | null = null
  if (o.start) {
    const s = await start(o)
    steps.push(s.step)
    pid = s.pid
  }
  const toml = [
    '[ldap]',
    `url = "ldap://127.0.0.1:${o.port}"`,
    `base_dn = "${o.suffix}"`,
    `bind_dn = "${adminDn(o.suffix)}"`,
    `password_file = "${o.passwordFile}"`,
    `ca_file = "${join(p.tls, 'ca.crt')}"`,
    'starttls = true'
  ]
  return { steps, toml, pid }
}

/** Stop a slapd that `--start` started (tests). */
export async function stopLdap (dir: string): Promise<void> {
  const pid = await runningPid(ldapPaths(dir).pidFile)
  if (pid === null) return
  process.kill(pid, 'SIGTERM')
  for (let i = 0; i < 100 && (await runningPid(ldapPaths(dir).pidFile)) !== null; i++) await new Promise((resolve) => setTimeout(resolve, 100))
}
