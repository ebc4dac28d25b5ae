import { readFileSync, statSync } from 'node:fs'
import { InvalidGecosError, InvalidShellError, InvalidUsernameError, ReservedUsernameError } from './errors.js'

/**
 * The username rule (docs/accounts.md): 1–32 characters, a lowercase ASCII
 * letter first, then lowercase letters, digits, '_' or '-', and not ending in
 * '-'. That is a strict subset of what useradd, NSS, sshd, LDAP DNs and
 * filters and shell globs all handle without quoting, so a valid name needs no
 * escaping anywhere (we still escape, as a second line of defence).
 */
export const USERNAME_MAX = 32
const USERNAME_RE = /^[a-z][a-z0-9_-]{0,31}$/

/** root, RFC 2142 role mailboxes, and the system accounts of common Debian boxes. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([
  'root', 'toor', 'admin', 'administrator', 'sysadmin', 'center', 'centerd',
  // RFC 2142 (and the usual aliases next to them)
  'postmaster', 'abuse', 'hostmaster', 'webmaster', 'noc', 'security', 'info',
  'marketing', 'sales', 'support', 'usenet', 'news', 'uucp', 'www', 'ftp',
  'mailer-daemon', 'nobody', 'noreply', 'no-reply',
  // Debian base-passwd and common daemons
  'daemon', 'bin', 'sys', 'sync', 'games', 'man', 'lp', 'mail', 'proxy',
  'www-data', 'backup', 'list', 'irc', 'gnats', 'nogroup', 'messagebus', 'sshd',
  'postgres', 'openldap', 'nslcd', 'nscd', 'sssd', 'ntp', 'ntpsec', 'chrony',
  'dnsmasq', 'avahi', 'polkitd', 'tss', 'uuidd', 'tcpdump', 'statd', 'rpc',
  'mysql', 'redis', 'nginx', 'apache', 'httpd', 'bind', 'named', 'unbound',
  'postfix', 'exim', 'dovecot', 'dovenull', 'opendkim', 'spamd', 'clamav',
  'git', 'gitlab', 'gitea', 'ircd', 'znc', 'tor', 'debian-tor', 'i2p',
  'staff', 'users', 'adm', 'wheel', 'sudo', 'shadow', 'utmp', 'tty', 'disk',
  'kmem', 'dialout', 'cdrom', 'floppy', 'audio', 'video', 'plugdev', 'netdev',
  'operator', 'src', 'voice', 'tape', 'fax', 'input', 'render', 'kvm', 'sgx'
])

/** Name prefixes that belong to the system, whatever follows. */
export const RESERVED_PREFIXES: readonly string[] = ['systemd-', 'debian-', 'center-', '_']

export interface LocalAccount {
  name: string
  id: number
}

/** Parse passwd(5)/group(5) lines into name + numeric id (3rd field). */
export function parseIdFile (text: string): LocalAccount[] {
  const out: LocalAccount[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const f = line.split(':')
    const id = Number(f[2])
    if (f[0] !== undefined && f[0] !== '' && Number.isInteger(id)) out.push({ name: f[0], id })
  }
  return out
}

/** This box's local users and groups, read from /etc/passwd and /etc/group (missing files count as empty). */
export function readLocalAccounts (passwd = '/etc/passwd', group = '/etc/group'): { users: LocalAccount[], groups: LocalAccount[] } {
  return { users: readIdFile(passwd), groups: readIdFile(group) }
}

// every name check reads these (a backfill: thousands a second); parse again only when the file changed
const idFiles = new Map<string, { stamp: string, accounts: LocalAccount[] }>()

function readIdFile (path: string): LocalAccount[] {
  let stamp = 'missing'
  try {
    const st = statSync(path, { bigint: true })
    stamp = `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`
  } catch { /* missing counts as empty */ }
  const hit = idFiles.get(path)
  if (hit !== undefined && hit.stamp === stamp) return hit.accounts
  let text = ''
  try { text = readFileSync(path, 'utf8') } catch { /* as empty */ }
  const accounts = parseIdFile(text)
  idFiles.set(path, { stamp, accounts })
  return accounts
}

export type LocalAccountsReader = () => { users: LocalAccount[], groups: LocalAccount[] }

function printable (s: string): string {
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s)
}

/** Syntax only: throws InvalidUsernameError with the reason. */
export function checkUsernameSyntax (name: unknown): asserts name is string {
  if (typeof name !== 'string') throw new InvalidUsernameError('username must be a string')
  if (name.length === 0) throw new InvalidUsernameError('username is empty')
  if (name.length > USERNAME_MAX) throw new InvalidUsernameError(`username is longer than ${USERNAME_MAX} characters`)
  if (!USERNAME_RE.test(name)) {
    throw new InvalidUsernameError(`username ${printable(name)} is not allowed: use a lowercase letter, then lowercase letters, digits, '_' or '-'`)
  }
  if (name.endsWith('-')) throw new InvalidUsernameError(`username ${printable(name)} must not end in '-'`)
}

/** Whether the name is on the reserved list or has a reserved prefix. */
export function isReservedName (name: string): boolean {
  return RESERVED_NAMES.has(name) || RESERVED_PREFIXES.some((p) => name.startsWith(p))
}

/**
 * The full rule: syntax, the reserved list, and no local user or group of
 * this box by that name. `local` is injectable for tests.
 */
export function checkUsername (name: unknown, local: LocalAccountsReader = readLocalAccounts): asserts name is string {
  checkUsernameSyntax(name)
  if (isReservedName(name)) throw new ReservedUsernameError(`username "${name}" is reserved`)
  const { users, groups } = local()
  if (users.some((u) => u.name === name)) throw new ReservedUsernameError(`username "${name}" is a system user on this box`)
  if (groups.some((g) => g.name === name)) throw new ReservedUsernameError(`username "${name}" is a system group on this box`)
}

export const GECOS_MAX = 128
// controls (incl. NUL, newlines), format chars (bidi overrides, zero-width), line/paragraph separators
const GECOS_BAD_CLASS = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u
// ':' and ',' break passwd(5)/gecos subfields; the rest are LDAP DN/filter metacharacters
const GECOS_BAD_CHARS = /[:,=*()\\+;<>"#]/

/** The real-name field: printable UTF-8, at most 128 characters, none of `: , = * ( ) \ + ; < > " #`. */
export function checkGecos (gecos: unknown): asserts gecos is string {
  if (typeof gecos !== 'string') throw new InvalidGecosError('gecos must be a string')
  if (/\p{Cs}/u.test(gecos)) throw new InvalidGecosError('gecos is not valid UTF-8 text')
  if ([...gecos].length > GECOS_MAX) throw new InvalidGecosError(`gecos is longer than ${GECOS_MAX} characters`)
  if (GECOS_BAD_CLASS.test(gecos)) throw new InvalidGecosError('gecos must not contain control or invisible formatting characters')
  const bad = GECOS_BAD_CHARS.exec(gecos)
  if (bad !== null) throw new InvalidGecosError(`gecos must not contain ${JSON.stringify(bad[0])}`)
  if (gecos !== gecos.trim()) throw new InvalidGecosError('gecos must not start or end with whitespace')
}

const SHELL_RE = /^\/[A-Za-z0-9_.+-]+(?:\/[A-Za-z0-9_.+-]+)*$/

/** An absolute path without '..' or odd characters; whether it is in /etc/shells is the caller's policy. */
export function checkShell (shell: unknown): asserts shell is string {
  if (typeof shell !== 'string' || shell.length > 64 || !SHELL_RE.test(shell) || shell.split('/').includes('..')) {
    throw new InvalidShellError(`login shell ${typeof shell === 'string' ? printable(shell) : ''} must be an absolute path such as /bin/bash`)
  }
}
