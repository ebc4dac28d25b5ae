import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Attribute, Change, Client } from 'ldapts'
import { PeerProcess, ROOT } from '../_util/peers.js'
import { runExit, type ExitResult } from '../_util/run.js'
import { startSlapd, type MdbSync, type Slapd } from '../_util/slapd.js'
import type { NetnsPlacement } from '../_util/netns.js'
import { btrfsUnsupported, mountBtrfs, type BtrfsMount } from '../_util/btrfs.js'

export const AUTHORIZED_KEYS = join(ROOT, 'dist/src/bin/center-authorized-keys.js')

/** A centerd process with its own slapd (ldaps, custom CA, ppolicy) and its own /center root. */
export interface AccountPeer {
  name: string
  peer: PeerProcess
  slapd: Slapd
  /** the /center root of this peer */
  root: string
  dir: string
  /** `[center] quota` of this peer: btrfs when asked for and a loop mount could be made */
  quota: 'btrfs' | 'none'
  destroy: () => Promise<void>
}

export interface AccountPeerOptions {
  /** put /center on a btrfs loop mount with `[center] quota = "btrfs"` (falls back to none where loop mounts fail) */
  btrfs?: boolean
  /** run centerd and its slapd inside this network namespace host; slapd then answers only inside it */
  netns?: NetnsPlacement
  /** how slapd's back-mdb syncs a commit; @default 'nometasync', as `centerctl setup ldap` makes it */
  mdbSync?: MdbSync
}

export async function startAccountPeer (name: string, extra = '', advertisePort?: number, opts: AccountPeerOptions = {}): Promise<AccountPeer> {
  const slapd = await startSlapd({ maxFailures: 3, mdbSync: opts.mdbSync ?? 'nometasync', ...(opts.netns === undefined ? {} : { netns: opts.netns }) })
  const dir = mkdtempSync(join(tmpdir(), `cn3-acct-${name}-`))
  // like /center on a real box: the user (after the command drops to their uid) must be able to walk down to it
  chmodSync(dir, 0o755)
  const root = join(dir, 'center')
  let fs: BtrfsMount | null = null
  if (opts.btrfs === true && btrfsUnsupported() === false) {
    fs = await mountBtrfs(join(dir, 'center.img'), root).catch((err: Error) => {
      console.log(`# ${name}: no btrfs loop mount here (${err.message.split('\n')[0]}); quota = none`)
      return null
    })
  }
  writeFileSync(join(dir, 'ldap.secret'), `${slapd.bindPassword}\n`, { mode: 0o600 })
  writeFileSync(join(dir, 'ldap-ca.crt'), slapd.ca)
  const extraToml = [
    '[ldap]', `url = "${slapd.url}"`, `base_dn = "${slapd.baseDn}"`, `bind_dn = "${slapd.bindDn}"`,
    `password_file = "${join(dir, 'ldap.secret')}"`, `ca_file = "${join(dir, 'ldap-ca.crt')}"`, 'starttls = false',
    '[center]', `root = "${root}"`, `quota = "${fs === null ? 'none' : 'btrfs'}"`, '[sync]', 'enabled = false', extra
  ].join('\n') + '\n'
  const peer = await PeerProcess.create({ name: `acct-${name}`, extraToml, peerToml: 'greeting = "auto"', ...(opts.netns === undefined ? {} : { netns: opts.netns }), ...(advertisePort === undefined ? {} : { advertisePort }) })
  try {
    await peer.start()
  } catch (err) {
    await peer.destroy().catch(() => {})
    await slapd.stop().catch(() => {})
    await fs?.unmount().catch(() => {})
    throw err
  }
  return {
    name, peer, slapd, root, dir, quota: fs === null ? 'none' : 'btrfs',
    destroy: async () => {
      await peer.destroy()
      await slapd.stop()
      await fs?.unmount()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

export async function ldapAdmin<T> (s: Slapd, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ url: s.url, tlsOptions: { ca: [s.ca] } })
  try {
    await c.bind(s.bindDn, s.bindPassword)
    return await fn(c)
  } finally { await c.unbind().catch(() => {}) }
}

export interface LdapUser { uid: string, uidNumber: number, gidNumber: number, keys: string[], locked: boolean, cn: string, shell: string, group: number | null }

const one = (v: unknown): string => String(Array.isArray(v) ? v[0] : v ?? '')
const many = (v: unknown): string[] => (v === undefined ? [] : Array.isArray(v) ? v.map(String) : [String(v)])

/** Every posixAccount in this slapd, by a real LDAP search, with its group's gidNumber. */
export async function ldapUsers (s: Slapd): Promise<Map<string, LdapUser>> {
  return await ldapAdmin(s, async (c) => {
    const people = await c.search(`ou=people,${s.baseDn}`, { scope: 'one', filter: '(objectClass=posixAccount)', attributes: ['uid', 'uidNumber', 'gidNumber', 'sshPublicKey', 'pwdAccountLockedTime', 'cn', 'loginShell'], paged: true })
    const groups = await c.search(`ou=groups,${s.baseDn}`, { scope: 'one', filter: '(objectClass=posixGroup)', attributes: ['cn', 'gidNumber'], paged: true })
    const g = new Map(groups.searchEntries.map((e) => [one(e.cn), Number(one(e.gidNumber))]))
    return new Map(people.searchEntries.map((e) => [one(e.uid), {
      uid: one(e.uid), uidNumber: Number(one(e.uidNumber)), gidNumber: Number(one(e.gidNumber)), keys: many(e.sshPublicKey).sort(),
      locked: many(e.pwdAccountLockedTime).length > 0, cn: one(e.cn), shell: one(e.loginShell), group: g.get(one(e.uid)) ?? null
    }]))
  })
}

export async function allDns (s: Slapd): Promise<string[]> {
  return await ldapAdmin(s, async (c) => (await c.search(s.baseDn, { filter: '(objectClass=*)', attributes: ['dn'] })).searchEntries.map((e) => e.dn).sort())
}

export async function setPassword (s: Slapd, name: string, pw: string): Promise<void> {
  await ldapAdmin(s, async (c) => {
    await c.modify(`uid=${name},ou=people,${s.baseDn}`, new Change({ operation: 'replace', modification: new Attribute({ type: 'userPassword', values: [pw] }) }))
  })
}

/** A bind as the user; resolves true on success, false on invalid credentials (wrong password or locked). */
export async function userBind (s: Slapd, name: string, pw: string): Promise<boolean> {
  const c = new Client({ url: s.url, tlsOptions: { ca: [s.ca] } })
  try {
    await c.bind(`uid=${name},ou=people,${s.baseDn}`, pw)
    return true
  } catch (err) {
    if ((err as Error).name === 'InvalidCredentialsError') return false
    throw err
  } finally { await c.unbind().catch(() => {}) }
}

/** Run center-authorized-keys as sshd would; stdout and exit code. */
export async function authorizedKeys (p: AccountPeer, user: string): Promise<ExitResult> {
  return await runExit(process.execPath, [AUTHORIZED_KEYS, '--config', p.peer.configPath, user])
}

/** centerctl that is expected to fail: the parsed {name, code, message} it printed. */
export async function ctlError (p: PeerProcess, ...args: string[]): Promise<{ name: string, code: string, message: string }> {
  try {
    await p.ctl(...args)
  } catch (err) {
    const m = /failed: centerctl: (\w+): (.*)/s.exec((err as Error).message)
    return { name: m?.[1] ?? '', code: (err as { code?: string }).code ?? '', message: m?.[2]?.trim() ?? (err as Error).message }
  }
  throw new Error(`centerctl ${args.join(' ')} succeeded but was expected to fail`)
}
