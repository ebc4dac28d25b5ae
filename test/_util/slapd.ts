import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { aptInstall } from './apt.js'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from 'ldapts'
import { OPENSSH_LPK_LDIF } from '../../src/setup/ldap.js'
import { freePort, sleep } from './wait.js'
import type { NetnsPlacement } from './netns.js'

/**
 * A throwaway OpenLDAP for tests, built as in HARNESS.md §1: a custom CA and
 * server certificate (plus an unrelated CA for negative tests), cn=config via
 * `slapadd -n0` with back_mdb + the ppolicy overlay (lockout after
 * `maxFailures` bad binds, locked until an admin unlocks), the openssh-lpk
 * schema (`sshPublicKey`), and `slapd -d 0` in the foreground as our child.
 * `stop()` kills it and removes the temp dir; it is safe to call twice.
 */

export type MdbSync = 'full' | 'nometasync' | 'nosync'

const MDB_SYNC_LDIF: Record<MdbSync, string> = {
  full: '',
  nometasync: 'olcDbEnvFlags: nometasync\n',
  nosync: 'olcDbNoSync: TRUE\nolcDbCheckpoint: 1024 1\n'
}

export interface SlapdInit {
  /** @default 3 */
  maxFailures?: number
  /**
   * How back-mdb syncs a commit. 'nometasync' is what `centerctl setup ldap`
   * makes (one fsync per commit, the meta page rides on the next); 'full' is
   * slapd's own default (two); 'nosync' (olcDbNoSync + a checkpoint each
   * minute) is unsafe and only a benchmark's comparison. @default 'nometasync'
   */
  mdbSync?: MdbSync
  /**
   * Run slapd inside this network namespace host (test/_util/netns.ts): it
   * listens on that namespace's own 127.0.0.1, which only processes inside
   * it (a centerd, nslcd, sshd there) reach; readiness is checked over ldapi.
   */
  netns?: NetnsPlacement
}

export interface Slapd {
  /** ldaps://127.0.0.1:PORT */
  url: string
  /** ldap://127.0.0.1:PORT, for StartTLS */
  starttlsUrl: string
  /** PEM of the CA that signed the server certificate */
  ca: string
  /** PEM of an unrelated CA (must be refused) */
  otherCa: string
  baseDn: string
  bindDn: string
  bindPassword: string
  ldapiUrl: string
  dir: string
  stop: () => Promise<void>
}

const BASE_DN = 'dc=center,dc=test'
const BIND_DN = `cn=admin,${BASE_DN}`
const BIND_PW = 'adminpw'

let availability: { ok: true } | { ok: false, reason: string } | null = null

// last resort: a test that forgot stop() must not leave a slapd behind
const live = new Set<ChildProcess>()
process.once('exit', () => { for (const c of live) c.kill('SIGKILL') })

function haveSlapd (): boolean {
  return existsSync('/usr/sbin/slapd') && existsSync('/usr/sbin/slapadd')
}

function installSlapd (): string | null {
  if (process.getuid?.() !== 0) return 'slapd is not installed and the tests do not run as root, so it cannot be installed'
  // HARNESS §0: preseed so slapd does not build its own database on install
  const preseed = 'slapd slapd/no_configuration boolean true\n'
  const status = aptInstall(['slapd', 'ldap-utils'], preseed)
  if (status !== 0 || !haveSlapd()) return `apt-get install slapd failed (exit ${String(status)})`
  return null
}

/** Whether a throwaway slapd can run here, installing it once when root; `reason` says why not. */
export function slapdAvailability (): { ok: true } | { ok: false, reason: string } {
  if (availability !== null) return availability
  if (haveSlapd()) availability = { ok: true }
  else {
    const why = installSlapd()
    availability = why === null ? { ok: true } : { ok: false, reason: why }
  }
  return availability
}

function openssl (cwd: string, args: string[]): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' })
}

/** mkcerts.sh: CA + server cert for 127.0.0.1/localhost + an unrelated CA. */
function mkcerts (dir: string): void {
  mkdirSync(dir, { recursive: true })
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', '/CN=Test Center CA', '-keyout', 'ca.key', '-out', 'ca.crt',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr'])
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n')
  openssl(dir, ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '30', '-extfile', 'ext.cnf', '-out', 'server.crt'])
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', '/CN=Other CA', '-keyout', 'other-ca.key', '-out', 'other-ca.crt'])
}

function configLdif (d: string, t: string, mdbSync: MdbSync): string {
  return `dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: ${d}/slapd.pid
olcArgsFile: ${d}/slapd.args
olcLogLevel: none
olcTLSCACertificateFile: ${t}/ca.crt
olcTLSCertificateFile: ${t}/server.crt
olcTLSCertificateKeyFile: ${t}/server.key

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
olcSuffix: ${BASE_DN}
olcRootDN: ${BIND_DN}
olcRootPW: ${BIND_PW}
olcDbDirectory: ${d}/data
olcDbMaxSize: 104857600
olcDbIndex: objectClass eq
olcDbIndex: uid,uidNumber,gidNumber,memberUid eq
olcDbIndex: cn eq
olcDbIndex: pwdAccountLockedTime pres
${MDB_SYNC_LDIF[mdbSync]}olcAccess: {0}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {1}to * by * read

dn: olcOverlay={0}ppolicy,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcPPolicyConfig
olcOverlay: {0}ppolicy
olcPPolicyDefault: cn=default,ou=policies,${BASE_DN}
olcPPolicyUseLockout: TRUE
olcPPolicyHashCleartext: TRUE
`
}

function baseLdif (maxFailures: number): string {
  const ou = (name: string): string => `dn: ou=${name},${BASE_DN}\nobjectClass: organizationalUnit\nou: ${name}\n`
  return [
    `dn: ${BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: center\ndc: center\n`,
    ou('people'), ou('groups'), ou('policies'),
    `dn: cn=default,ou=policies,${BASE_DN}\nobjectClass: device\nobjectClass: pwdPolicy\ncn: default\npwdAttribute: userPassword\n` +
    `pwdMaxFailure: ${maxFailures}\npwdLockout: TRUE\npwdLockoutDuration: 0\npwdFailureCountInterval: 0\n`
  ].join('\n')
}

/** mkslapd.sh: cn=config and the base entries, offline. */
function mkslapd (d: string, t: string, maxFailures: number, mdbSync: MdbSync): void {
  mkdirSync(join(d, 'slapd.d'), { recursive: true })
  mkdirSync(join(d, 'data'), { recursive: true })
  writeFileSync(join(d, 'config.ldif'), configLdif(d, t, mdbSync))
  execFileSync('slapadd', ['-q', '-n0', '-F', join(d, 'slapd.d'), '-l', join(d, 'config.ldif')], { stdio: ['ignore', 'ignore', 'pipe'] })
  writeFileSync(join(d, 'base.ldif'), baseLdif(maxFailures))
  execFileSync('slapadd', ['-q', '-n1', '-F', join(d, 'slapd.d'), '-l', join(d, 'base.ldif')], { stdio: ['ignore', 'ignore', 'pipe'] })
}

async function answers (url: string): Promise<boolean> {
  const c = new Client({ url, timeout: 1000, connectTimeout: 1000 })
  try {
    await c.search('', { scope: 'base', filter: '(objectClass=*)' })
    return true
  } catch {
    return false
  } finally {
    await c.unbind().catch(() => {})
  }
}

async function waitExit (child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  await Promise.race([new Promise((resolve) => child.once('exit', resolve)), sleep(ms)])
}

function spawnSlapd (d: string, ldapPort: number, ldapsPort: number, ldapi: string, netns?: SlapdInit['netns']): ChildProcess {
  const urls = `ldap://127.0.0.1:${ldapPort}/ ldaps://127.0.0.1:${ldapsPort}/ ${ldapi}`
  const args = ['-d', '0', '-F', join(d, 'slapd.d'), '-h', urls]
  // `ip netns exec` execs slapd in place: the child's pid is slapd's, so kill() reaches it
  const cmd = netns === undefined ? { cmd: 'slapd', args } : netns.net.wrap(netns.host, '/usr/sbin/slapd', args)
  return spawn(cmd.cmd, cmd.args, { stdio: 'ignore' })
}

/** Whether slapd answers a root DSE search over its Unix socket (reachable from any network namespace). */
async function answersLdapi (ldapi: string): Promise<boolean> {
  return await new Promise((resolve) => {
    execFile('ldapsearch', ['-x', '-H', ldapi, '-b', '', '-s', 'base', '-LLL', 'objectClass'], { timeout: 2000 }, (err) => resolve(err === null))
  })
}

/** Start a fresh slapd; throws if slapd is unavailable (check `slapdAvailability()` first to skip). */
export async function startSlapd (init: SlapdInit = {}): Promise<Slapd> {
  const avail = slapdAvailability()
  if (!avail.ok) throw new Error(avail.reason)
  const dir = mkdtempSync(join(tmpdir(), 'center-slapd-'))
  let child: ChildProcess | null = null
  const stop = async (): Promise<void> => {
    if (child !== null) {
      const c = child
      child = null
      c.kill('SIGTERM')
      live.delete(c)
      await waitExit(c, 3000)
      if (c.exitCode === null && c.signalCode === null) { c.kill('SIGKILL'); await waitExit(c, 1000) }
    }
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const tls = join(dir, 'tls')
    const d = join(dir, 's')
    mkcerts(tls)
    mkslapd(d, tls, init.maxFailures ?? 3, init.mdbSync ?? 'nometasync')
    const [ldapPort, ldapsPort] = [await freePort(), await freePort()]
    const ldapiUrl = `ldapi://${encodeURIComponent(join(d, 'ldapi'))}`
    child = spawnSlapd(d, ldapPort, ldapsPort, ldapiUrl, init.netns)
    child.unref()
    live.add(child)
    const starttlsUrl = `ldap://127.0.0.1:${ldapPort}`
    const end = Date.now() + 10_000
    const ready = init.netns === undefined ? async () => await answers(starttlsUrl) : async () => await answersLdapi(ldapiUrl)
    while (!(await ready())) {
      if (child.exitCode !== null || Date.now() > end) throw new Error(`slapd did not start (exit ${String(child.exitCode)})`)
      await sleep(20)
    }
    return {
      url: `ldaps://127.0.0.1:${ldapsPort}`,
      starttlsUrl,
      ca: readFileSync(join(tls, 'ca.crt'), 'utf8'),
      otherCa: readFileSync(join(tls, 'other-ca.crt'), 'utf8'),
      baseDn: BASE_DN,
      bindDn: BIND_DN,
      bindPassword: BIND_PW,
      ldapiUrl,
      dir,
      stop
    }
  } catch (err) {
    await stop()
    throw err
  }
}
