import { existsSync } from 'node:fs'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BadRequestError, CenterError } from '../errors.js'
import { lookupUser, run, runOk } from '../systemd/run.js'

/**
 * `centerctl setup ssh`: the account peers push /center trees as
 * (docs/center.md, src/sync/), and the sshd snippet that points its logins at
 * the authorized_keys centerd writes (`<root>/.sync/authorized_keys`, each
 * key `restrict`ed with the receive forced command). It lives in its own file
 * beside the accounts snippet (systemd/sshd_config.d/center.conf, which sets
 * AuthorizedKeysCommand for users): a Match block must come last in a file,
 * and sshd reads sshd_config.d/*.conf in name order, so `center-sync.conf`
 * follows `center.conf` and both apply.
 */

export interface SshSetupOptions {
  user: string
  root: string
  /** where the snippet goes; /etc/ssh/sshd_config.d on a real box */
  sshdDir: string
  /** the account's home, under centerd's state dir */
  home: string
}

export interface SshStep { action: 'created' | 'changed' | 'unchanged' | 'ran' | 'skipped', what: string }

const NAME = /^[a-z_][a-z0-9_-]{0,30}$/
export const SSHD_SNIPPET_NAME = 'center-sync.conf'

export function sshdSnippet (user: string, root: string): string {
  return `# written by \`centerctl setup ssh\`: peers push /center trees as ${user}
# (docs/center.md). centerd writes the keys file; each key is restricted to
# the receive forced command naming its peer.
Match User ${user}
    AuthorizedKeysFile ${join(root, '.sync', 'authorized_keys')}
    AuthorizedKeysCommand none
    PasswordAuthentication no
    KbdInteractiveAuthentication no
    DisableForwarding yes
    PermitTTY no
    PermitUserRC no
`
}

/** The system account: no password ('*', not '!': sshd refuses locked accounts even with a key), /bin/sh for the forced command. */
async function ensureUser (o: SshSetupOptions): Promise<SshStep[]> {
  const existing = await lookupUser(o.user)
  if (existing !== null) return [{ action: 'unchanged', what: `account ${o.user} (uid ${existing.uid})` }]
  await runOk('useradd', ['--system', '--user-group', '--home-dir', o.home, '--no-create-home', '--shell', '/bin/sh', '--comment', 'center sync (peers push /center trees)', o.user])
  await runOk('usermod', ['-p', '*', o.user])
  return [{ action: 'created', what: `account ${o.user} (system, no password, shell /bin/sh, home ${o.home})` }]
}

async function ensureSnippet (o: SshSetupOptions): Promise<{ step: SshStep, file: string }> {
  const file = join(o.sshdDir, SSHD_SNIPPET_NAME)
  const text = sshdSnippet(o.user, o.root)
  const old = await readFile(file, 'utf8').catch(() => null)
  if (old === text) return { step: { action: 'unchanged', what: file }, file }
  await mkdir(o.sshdDir, { recursive: true, mode: 0o755 })
  await writeFile(`${file}.tmp`, text, { mode: 0o644 })
  await rename(`${file}.tmp`, file)
  return { step: { action: old === null ? 'created' : 'changed', what: file }, file }
}

/** sshd -t on the whole configuration when the snippet is in the real directory, else on the snippet alone. */
async function validate (file: string, o: SshSetupOptions): Promise<SshStep> {
  if (!existsSync('/usr/sbin/sshd')) return { action: 'skipped', what: 'sshd -t (openssh-server is not installed)' }
  const conf = o.sshdDir === '/etc/ssh/sshd_config.d' ? '/etc/ssh/sshd_config' : file
  const r = await run('/usr/sbin/sshd', ['-t', '-f', conf])
  if (r.code !== 0) throw new CenterError(`sshd -t -f ${conf} refuses the configuration: ${r.stderr.trim()}`)
  return { action: 'ran', what: `sshd -t -f ${conf}` }
}

export async function setupSsh (o: SshSetupOptions): Promise<SshStep[]> {
  if (!NAME.test(o.user)) throw new BadRequestError(`--user ${JSON.stringify(o.user)}: use lower-case letters, digits, _ and -`)
  if (!o.root.startsWith('/') || /\s/.test(o.root)) throw new BadRequestError(`--root ${JSON.stringify(o.root)}: an absolute path without spaces`)
  const steps = await ensureUser(o)
  const s = await ensureSnippet(o)
  steps.push(s.step)
  steps.push(await validate(s.file, o))
  return steps
}
