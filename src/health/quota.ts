import { existsSync } from 'node:fs'
import { lstat, readdir } from 'node:fs/promises'
import { isSubvolumeRoot } from '../quota/btrfs.js'
import { join } from 'node:path'
import type { Config } from '../config/index.js'
import { run } from '../systemd/run.js'
import { check, type Check } from './check.js'

const TOOL: Record<'btrfs' | 'setquota' | 'xfs', { cmd: string, args: string[], pkg: string }> = {
  btrfs: { cmd: 'btrfs', args: ['--version'], pkg: 'btrfs-progs' },
  setquota: { cmd: 'setquota', args: ['--version'], pkg: 'quota' },
  xfs: { cmd: 'xfs_quota', args: ['-V'], pkg: 'xfsprogs' }
}

/**
 * The per-user quota backend of `[center] quota`: the tool is installed, the
 * tree sits on a file system of the right kind, and quotas are switched on
 * there. What the sync and accounts services rely on before setting a limit.
 */
export async function quotaCheck (center: Config['center']): Promise<Check> {
  const { root, quota } = center
  if (!existsSync(root)) return check('quota', quota === 'none' ? 'warn' : 'fail', `${root} does not exist`, 'centerctl setup center')
  const fsType = (await run('stat', ['-f', '-c', '%T', root])).stdout.trim()
  if (quota === 'none') return check('quota', 'warn', `per-user quotas are off ([center] quota = "none"; ${root} is on ${fsType})`, 'set [center] quota = "btrfs" (or setquota / xfs) to cap each user\'s share')
  const tool = TOOL[quota]
  const probe = await run(tool.cmd, tool.args, { timeoutMs: 10_000 })
  if (probe.code === -1) return check('quota', 'fail', `[center] quota = "${quota}" but ${tool.cmd} is not installed (${probe.stderr.trim().split('\n').pop() ?? ''})`, `apt-get install ${tool.pkg}`)
  if (quota === 'btrfs') return await btrfsState(root, fsType)
  const mount = center.quotaMount
  if (mount === null) return check('quota', 'fail', `[center] quota = "${quota}" needs the mount point holding ${root}`, `set [center] quota_mount (findmnt -T ${root} -o TARGET)`)
  if (quota === 'xfs') return await xfsState(root, fsType, mount)
  return await setquotaState(root, mount)
}

async function btrfsState (root: string, fsType: string): Promise<Check> {
  if (fsType !== 'btrfs') return check('quota', 'fail', `[center] quota = "btrfs" but ${root} is on ${fsType}, not btrfs`, `put ${root} on a btrfs file system (docs/admin/install.md), or set [center] quota to setquota, xfs or none`)
  const r = await run('btrfs', ['qgroup', 'show', root], { timeoutMs: 30_000 })
  if (r.code !== 0) return check('quota', 'fail', `btrfs quotas are not usable on ${root}: ${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''}`, `btrfs quota enable ${root}`)
  const plain = await plainUserTrees(root)
  if (plain.length > 0) {
    const shown = plain.slice(0, 5).join(', ') + (plain.length > 5 ? ` and ${plain.length - 5} more` : '')
    return check('quota', 'warn', `${plain.length} user tree(s) under ${root}/users are plain directories, not subvolumes, so no quota holds them: ${shown}`, `move each aside (mv ${root}/users/NAME ${root}/NAME.old, on the same file system); then systemctl restart centerd: at start it makes every missing user tree again (a subvolume), and sync brings the files back from the other peers; or copy them back yourself`)
  }
  return check('quota', 'ok', `btrfs qgroups enabled on ${root}`)
}

/** users/* that are directories but not subvolume roots: made before quota = "btrfs" was set. */
async function plainUserTrees (root: string): Promise<string[]> {
  const users = join(root, 'users')
  const names = await readdir(users).catch(() => [] as string[])
  const out: string[] = []
  for (const n of names.sort()) {
    const st = await lstat(join(users, n)).catch(() => null)
    if (st !== null && st.isDirectory() && !await isSubvolumeRoot(join(users, n))) out.push(n)
  }
  return out
}

async function xfsState (root: string, fsType: string, mount: string): Promise<Check> {
  if (fsType !== 'xfs') return check('quota', 'fail', `[center] quota = "xfs" but ${root} is on ${fsType}, not xfs`, 'set [center] quota to match the file system (btrfs, setquota) or none')
  const r = await run('xfs_quota', ['-x', '-c', 'state -u', mount], { timeoutMs: 30_000 })
  if (r.code !== 0 || !/Enforcement: ON/i.test(r.stdout)) return check('quota', 'fail', `user quota is not enforced on ${mount}`, `mount ${mount} with the uquota option (in /etc/fstab) and remount`)
  return check('quota', 'ok', `xfs user quotas enforced on ${mount}`)
}

async function setquotaState (root: string, mount: string): Promise<Check> {
  const r = await run('quotaon', ['-p', '-u', mount], { timeoutMs: 30_000 })
  // quotaon -p exits non-zero when quotas are ON (it reports state through the exit code)
  if (!/is on/.test(r.stdout)) return check('quota', 'fail', `user quota is off on ${mount} (${(r.stdout || r.stderr).trim().split('\n')[0] ?? ''})`, `add usrquota to ${mount} in /etc/fstab, remount, then quotacheck -cum ${mount} && quotaon -u ${mount}`)
  return check('quota', 'ok', `user quotas on for ${mount} (holding ${root})`)
}
