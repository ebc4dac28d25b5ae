import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { aptInstall } from '../_util/apt.js'
import { runExit, type ExitResult } from '../_util/run.js'
import { ROOT } from '../_util/peers.js'
import { waitFor } from '../_util/wait.js'
import type { Netns } from '../_util/netns.js'
import { AUTHORIZED_KEYS, type AccountPeer } from './_peers.js'

const run = promisify(execFile)

/**
 * The login side of a peer host (HARNESS.md §3, recipe A): nslcd and sshd in
 * the host's network namespace, in a private mount namespace whose root is an
 * overlay of `/` (tmpfs upper) entered with chroot. Inside, /etc/nsswitch.conf
 * says `passwd: files ldap`, /etc/nslcd.conf is our shipped
 * systemd/nslcd/nslcd.conf.example pointed at this host's slapd, and sshd runs
 * with our shipped sshd_config.d snippet whose AuthorizedKeysCommand is
 * center-authorized-keys with this peer's config. The machine's own /etc is
 * never written: every change lands in the overlay's tmpfs and vanishes with
 * the last process of the mount namespace.
 */
export interface SshHost {
  /** sshd's pid (the mount namespace lives as long as it does) */
  pid: number
  ip: string
  dir: string
  /** `getent passwd NAME` inside the host: the line, or '' when NSS does not know the name */
  getent: (name: string) => Promise<string>
  /** sshd's log, for failure messages */
  log: () => string
  destroy: () => Promise<void>
}

const PRESEED = [
  // HARNESS §0: libnss-ldapd must not edit the machine's /etc/nsswitch.conf
  'libnss-ldapd libnss-ldapd/nsswitch multiselect',
  'libnss-ldapd:amd64 libnss-ldapd/nsswitch multiselect',
  'nslcd nslcd/ldap-uris string ldap://127.0.0.1/',
  'nslcd nslcd/ldap-base string dc=center,dc=test'
].join('\n') + '\n'

const dpkgHas = (pkg: string): boolean => spawnSync('dpkg-query', ['-W', '-f', '${Status}', pkg], { encoding: 'utf8' }).stdout?.includes('install ok installed') === true

/** Why sshd hosts cannot run here, or null (installs nslcd, libnss-ldapd and OpenSSH when root and missing). */
export function sshHostUnsupported (): string | null {
  if (process.getuid?.() !== 0) return 'sshd hosts need root (namespaces, mounts, chroot)'
  const pkgs = ['nslcd', 'libnss-ldapd', 'openssh-server', 'openssh-client']
  const missing = pkgs.filter((p) => !dpkgHas(p))
  if (missing.length > 0) aptInstall(missing, PRESEED)
  const still = pkgs.filter((p) => !dpkgHas(p))
  if (still.length > 0) return `could not install ${still.join(', ')}`
  for (const bin of ['/usr/sbin/sshd', '/usr/sbin/nslcd', '/usr/bin/ssh', '/usr/bin/ssh-keygen']) {
    if (!existsSync(bin)) return `${bin} is missing`
  }
  return null
}

/** The outer part: runs in the host's netns, in a fresh mount namespace; builds the overlay root and enters it. */
const NS_SCRIPT = `set -eu
D=$1; shift
R=$D/root
mkdir -p "$D/t" "$R"
mount -t tmpfs -o mode=755 cn3-ovl "$D/t"          # upper/work must not live on the lower fs "/"
mkdir -p "$D/t/upper" "$D/t/work"
mount -t overlay cn3-root -o "lowerdir=/,upperdir=$D/t/upper,workdir=$D/t/work" "$R"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount --rbind /sys "$R/sys"
mount -t tmpfs -o mode=755 cn3-run "$R/run"        # own /run/sshd and /run/nslcd/socket
mount -t tmpfs -o mode=1777 cn3-tmp "$R/tmp"
# live views of what the peer writes (an overlay's lower must not change under it)
for b in "$@"; do mkdir -p "$R$b"; mount --bind "$b" "$R$b"; done
touch "$R/.center-test-root"
exec chroot "$R" sh "$D/inner.sh" "$D"
`

/** The inner part: runs chrooted in the overlay only (it checks), edits that /etc, starts nslcd, then becomes sshd. */
const INNER_SCRIPT = `set -eu
[ -f /.center-test-root ] || { echo "inner.sh: not inside the test overlay, refusing to touch /etc" >&2; exit 99; }
D=$1
sed -i 's/^\\(passwd\\|group\\|shadow\\):.*/\\1: files ldap/' /etc/nsswitch.conf
install -m 640 -o root -g nslcd "$D/nslcd.conf" /etc/nslcd.conf
mkdir -p /run/sshd /run/nslcd /usr/local/libexec
chown nslcd:nslcd /run/nslcd
install -m 755 -o root -g root "$D/akc" /usr/local/libexec/center-authorized-keys
rm -f /etc/ssh/ssh_host_*; ssh-keygen -q -A         # this host's own host keys
install -m 644 "$D/center.conf" /etc/ssh/sshd_config.d/center.conf
nslcd -d >"$D/nslcd.log" 2>&1 &
echo $! > "$D/nslcd.pid"
exec /usr/sbin/sshd -D -e
`

/** Bring up nslcd + sshd for `peer`, which runs (with its slapd) in netns host `host`. */
export async function startSshHost (net: Netns, host: string, peer: AccountPeer): Promise<SshHost> {
  const dir = mkdtempSync(join(tmpdir(), `cn3-ssh-${host}-`))
  chmodSync(dir, 0o755)
  writeFileSync(join(dir, 'ns.sh'), NS_SCRIPT)
  writeFileSync(join(dir, 'inner.sh'), INNER_SCRIPT)
  // the shipped snippets, pointed at this host's slapd and our build of the command
  const nslcd = readFileSync(join(ROOT, 'systemd/nslcd/nslcd.conf.example'), 'utf8')
    .replace(/^uri .*$/m, `uri ${peer.slapd.starttlsUrl}/`)
    .replace(/^base .*$/m, `base ${peer.slapd.baseDn}`)
    .replace(/^tls_cacertfile .*$/m, `tls_cacertfile ${join(dir, 'ca.crt')}`)
  writeFileSync(join(dir, 'nslcd.conf'), nslcd)
  writeFileSync(join(dir, 'ca.crt'), peer.slapd.ca, { mode: 0o644 })
  const sshd = readFileSync(join(ROOT, 'systemd/sshd_config.d/center.conf'), 'utf8')
    .replace('/usr/bin/center-authorized-keys', '/usr/local/libexec/center-authorized-keys') + 'LogLevel VERBOSE\n'
  if (!sshd.includes('/usr/local/libexec/center-authorized-keys %u')) throw new Error('shipped sshd snippet has no AuthorizedKeysCommand line')
  writeFileSync(join(dir, 'center.conf'), sshd)
  // sshd refuses a command below /tmp (not root-only all the way up): install a wrapper inside the overlay
  writeFileSync(join(dir, 'akc'), `#!/bin/sh\nexec ${process.execPath} ${AUTHORIZED_KEYS} --config ${peer.peer.configPath} "$1"\n`)
  const binds = [dir, ROOT, peer.dir, peer.peer.dir]
  const w = net.wrap(host, 'unshare', ['--mount', '--propagation', 'private', '--', 'sh', join(dir, 'ns.sh'), dir, ...binds])
  const log = join(dir, 'sshd.log')
  const out = openSync(log, 'a')
  const child: ChildProcess = spawn(w.cmd, w.args, { stdio: ['ignore', out, out] })
  const pid = child.pid as number
  let exited = false
  child.once('exit', () => { exited = true })
  const readLog = (): string => existsSync(log) ? readFileSync(log, 'utf8') : ''
  const stop = async (): Promise<void> => {
    const nslcdPid = existsSync(join(dir, 'nslcd.pid')) ? Number(readFileSync(join(dir, 'nslcd.pid'), 'utf8')) : NaN
    for (const p of [pid, nslcdPid]) { try { if (Number.isInteger(p) && p > 0) process.kill(p, 'SIGKILL') } catch { /* gone */ } }
    if (!exited) await new Promise((resolve) => { child.once('exit', resolve); setTimeout(resolve, 3000) })
    // the mount namespace (and its overlay) went with its last process; nothing is mounted on the machine
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    // every exec along the way keeps the pid: once it is sshd (and nslcd is up), the host is ready
    await waitFor(`sshd on ${host}`, () => {
      if (exited) throw new Error(`sshd host ${host} exited: ${readLog()}`)
      let exe = ''
      try { exe = readlinkSync(`/proc/${pid}/exe`) } catch { /* not yet */ }
      // seen from outside the chroot, the path runs through the overlay
      return exe.endsWith('/usr/sbin/sshd') && existsSync(join(dir, 'nslcd.pid'))
    }, 15_000, 50)
  } catch (err) {
    await stop()
    throw err
  }
  return {
    pid,
    ip: net.host(host).ip,
    dir,
    getent: async (name) => {
      try {
        return (await run('nsenter', ['-t', String(pid), '-m', '-n', '-r', '-w', 'getent', 'passwd', name], { timeout: 10_000 })).stdout.trim()
      } catch (err) {
        if ((err as { code?: number }).code === 2) return '' // getent: key not found
        throw err
      }
    },
    log: readLog,
    destroy: stop
  }
}

/** `ssh USER@HOST id -un` from inside netns host `from`; code 0 and the name on a login, 255 on a refusal. */
export async function sshLogin (net: Netns, from: string, to: SshHost, user: string, keyFile: string): Promise<ExitResult> {
  const w = net.wrap(from, 'ssh', ['-F', '/dev/null', '-i', keyFile, '-o', 'UserKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=no',
    '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', '-o', 'LogLevel=ERROR', `${user}@${to.ip}`, 'id', '-un'])
  const r = await runExit(w.cmd, w.args, 20_000)
  return { ...r, stdout: r.stdout.trim() }
}
