import { posix } from 'node:path'
import { assertSafePath } from '../quota/validate.js'
import { ForcedCommandError } from './errors.js'
import { PARTIAL_DIR } from './tree.js'

export interface RsyncPushOptions {
  /** local source tree (a trailing slash is added: the contents are sent) */
  source: string
  /** destination directory: local path, or on the remote host when `remote` is set */
  dest: string
  /** omit for a local copy (tests); otherwise pushed over SSH */
  remote?: { host: string, user: string, port?: number, identityFile?: string, controlPath: string, knownHostsFile?: string }
  /** per-file cap (the user's whole limit: no single file can be bigger) */
  maxFileBytes: number
  /**
   * How to notice changed files. 'mtime-ns' (`--modify-window=-1`, rsync >= 3.1.3 on
   * both sides) is the default: PERF-NOTES §5 shows whole-second mtimes miss
   * same-size rewrites, and --checksum reads every file on both sides each run.
   * @default 'mtime-ns'
   */
  compare?: 'mtime-ns' | 'checksum'
  /** @default 30 */
  timeoutSeconds?: number
  /** paths (relative to source) never to send: what the sender's own scan found forbidden */
  exclude?: string[]
  /**
   * A filter file (written by `sendOnlyRules`) naming everything the
   * sender's scan approved: rsync sends those and nothing else, so an entry
   * that appears between the scan and the transfer (a set-uid file moved in)
   * waits for the next scan instead of slipping through.
   */
  sendOnlyFile?: string
}

const HOST = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$|^\[[0-9a-f:.]+\]$/i
const SSH_USER = /^[a-z_][a-z0-9_-]{0,31}$/

/**
 * The argv (after `rsync`) for one push. Devices, specials, set-uid/set-gid
 * bits and symlinks leaving the tree are never sent; ownership is not sent
 * (the receiver sets the user's uid); files land via a partial dir and are
 * all renamed into place at the end (--delay-updates), so a failed or
 * over-quota push leaves no half-written file in the destination.
 */
export function rsyncPushArgv (o: RsyncPushOptions): string[] {
  assertSafePath(o.source)
  assertSafePath(o.dest)
  if (!Number.isSafeInteger(o.maxFileBytes) || o.maxFileBytes <= 0) throw new ForcedCommandError(`bad maxFileBytes ${o.maxFileBytes}`)
  const args = [
    '-a', '--no-owner', '--no-group', '--no-devices', '--no-specials',
    '--safe-links', '--chmod=u-s,g-s', '--delete',
    (o.compare ?? 'mtime-ns') === 'checksum' ? '--checksum' : '--modify-window=-1',
    `--max-size=${o.maxFileBytes}`,
    `--partial-dir=${PARTIAL_DIR}`, '--delay-updates',
    '--numeric-ids', `--timeout=${o.timeoutSeconds ?? 30}`
  ]
  for (const p of o.exclude ?? []) args.push(`--exclude=/${excludePattern(p)}`)
  if (o.sendOnlyFile !== undefined) {
    assertSafePath(o.sendOnlyFile)
    args.push(`--filter=merge ${o.sendOnlyFile}`)
  }
  if (o.remote === undefined) return [...args, `${o.source}/`, `${o.dest}/`]
  const r = o.remote
  // only a client of the master: an ssh that made itself the master would keep rsync's pipes open
  const ssh = sshArgv(r, 'no')
  // rsync splits -e on spaces itself (no shell); every piece above is free of spaces and quotes
  return [...args, '-e', ssh.join(' '), `${o.source}/`, `${r.user}@${r.host}:${o.dest}/`]
}

export type SshRemote = NonNullable<RsyncPushOptions['remote']>

/** `ssh` and its options (no destination) for pushes to one peer, multiplexed over one connection. */
export function sshArgv (r: SshRemote, master: 'auto' | 'no' = 'auto'): string[] {
  if (!HOST.test(r.host)) throw new ForcedCommandError(`bad remote host ${JSON.stringify(r.host)}`)
  if (!SSH_USER.test(r.user)) throw new ForcedCommandError(`bad remote user ${JSON.stringify(r.user)}`)
  assertSafePath(r.controlPath.replace(/%C$/, 'C'))
  const ssh = ['ssh', '-F', '/dev/null', '-o', 'BatchMode=yes', '-o', `ControlMaster=${master}`, '-o', `ControlPath=${r.controlPath}`,
    '-o', 'ControlPersist=60', '-o', 'KexAlgorithms=curve25519-sha256',
    // a master connection across a cut network must die soon, not after TCP gives up (minutes)
    '-o', 'ServerAliveInterval=5', '-o', 'ServerAliveCountMax=3', '-o', 'ConnectTimeout=10']
  if (r.port !== undefined) {
    if (!Number.isInteger(r.port) || r.port < 1 || r.port > 65535) throw new ForcedCommandError(`bad port ${r.port}`)
    ssh.push('-p', String(r.port))
  }
  if (r.knownHostsFile !== undefined) {
    assertSafePath(r.knownHostsFile)
    // only the host key the peer sent us in its signed sync-key event is trusted
    ssh.push('-o', `UserKnownHostsFile=${r.knownHostsFile}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'GlobalKnownHostsFile=/dev/null')
  }
  if (r.identityFile !== undefined) {
    assertSafePath(r.identityFile)
    ssh.push('-i', r.identityFile, '-o', 'IdentitiesOnly=yes')
  }
  return ssh
}

export interface ForcedCommandOptions {
  /** @default '/center' */
  root?: string
  /** map an allowed tree (e.g. `users/alice`) to where the receive really goes (its staging dir) */
  stagingFor: (tree: string) => string
}

export interface AllowedReceive {
  /** the synced tree, relative to root: `users/<name>`, `services/<name>`, `proposals` or `shared` */
  tree: string
  /** argv to exec directly (no shell): rsync --server ... . <staging>/ */
  argv: string[]
  /** the id of the signed sync-push event this push claims (`<root>/<tree>/.push-<id>/`), if named */
  push: string | null
}

/** Long options the receiving rsync may be given (what rsyncPushArgv makes it send). */
const ALLOWED_LONG = new Set(['--delete', '--delay-updates', '--safe-links', '--numeric-ids', '-@-1', '--modify-window=-1'])
const TREE = /^(users\/[a-z_][a-z0-9_-]{0,31}|services\/[a-z0-9][a-z0-9_-]{0,63}|proposals|shared)$/

/**
 * Check SSH_ORIGINAL_COMMAND for the `command="center-rsync-receive"` key of
 * a peer: only `rsync --server` receiving into one synced tree under root,
 * with only the options our own pushes use. Anything else (--sender, other
 * paths, .., shell syntax, extra or unknown options) is refused. The
 * destination is replaced by the tree's staging dir; the caller then runs
 * checkIncoming + applyTree.
 */
export function validateForcedCommand (original: string | undefined, opts: ForcedCommandOptions): AllowedReceive {
  const root = opts.root ?? '/center'
  const refuse = (why: string): never => { throw new ForcedCommandError(`refused ssh command: ${why}`, { detail: { command: String(original).slice(0, 200) } }) }
  if (typeof original !== 'string' || original.length === 0) refuse('no command (interactive login is not allowed)')
  const cmd = original as string
  if (cmd.length > 1024) refuse('too long')
  // rsync >= 3.2.4 backslash-escapes odd characters in remote args; we allow none of them
  if (/[^A-Za-z0-9 ._\-=/@]/.test(cmd)) refuse('characters outside [A-Za-z0-9 ._-=/@]')
  const w = cmd.split(' ')
  if (w.some((x) => x === '')) refuse('repeated or trailing spaces')
  if (w[0] !== 'rsync' || w[1] !== '--server') refuse('not rsync --server')
  const rest = w.slice(2)
  const dest = rest.pop() as string
  const dot = rest.pop()
  if (dot !== '.') refuse('expected ". <dest>" at the end')
  const out: string[] = []
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i] as string
    if (/^-[a-zA-Z]*e[.a-zA-Z]*$/.test(a) && !a.startsWith('--')) {
      // the short-option bundle; letters before 'e' are real options, after it capability flags
      const opts = a.slice(1, a.indexOf('e'))
      const bad = opts.replace(/[logtprcx]/g, '')
      if (bad !== '') refuse(`short option(s) ${bad} not allowed`)
      out.push(a)
    } else if (ALLOWED_LONG.has(a)) {
      out.push(a)
    } else if (/^--timeout=\d{1,4}$/.test(a) || /^--max-size=\d{1,12}$/.test(a)) {
      out.push(a)
    } else if (a === '--partial-dir' && rest[i + 1] === PARTIAL_DIR) {
      out.push(a, PARTIAL_DIR)
      i++
    } else {
      refuse(`option ${JSON.stringify(a)} not allowed`)
    }
  }
  if (!dest.startsWith(`${root}/`)) refuse(`destination outside ${root}`)
  let rel = dest.slice(root.length + 1).replace(/\/$/, '')
  // the destination may name the announcing event: <tree>/.push-<id> (a label only: the data goes to staging)
  const named = /^(.+)\/\.push-([A-Za-z0-9_-]{8,32})$/.exec(rel)
  if (named !== null) rel = named[1] as string
  if (posix.normalize(rel) !== rel || !TREE.test(rel)) refuse(`destination ${JSON.stringify(dest)} is not a synced tree`)
  const staging = opts.stagingFor(rel)
  assertSafePath(staging)
  return { tree: rel, argv: ['rsync', '--server', ...out, '.', `${staging}/`], push: named?.[2] ?? null }
}

/**
 * The rules of a `sendOnlyFile`: show (a sender-side include) each path the
 * scan approved, then hide everything else. Sender-side only, so the
 * receiver's --delete still removes what the sender no longer has. Names
 * with control characters never get here (the scan forbids them), so one
 * rule per line is safe.
 */
export function sendOnlyRules (paths: readonly string[]): string {
  return paths.map((p) => `show /${excludePattern(p)}\n`).join('') + 'hide *\n'
}

/**
 * An anchored rsync filter pattern matching exactly `rel`. rsync reads a
 * backslash as an escape only when the pattern holds a wildcard, so escape
 * only then.
 */
export function excludePattern (rel: string): string {
  return /[*?[]/.test(rel) ? rel.replace(/[\\*?[]/g, '\\$&') : rel
}
