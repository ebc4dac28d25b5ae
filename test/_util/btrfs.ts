import { execFile, spawnSync } from 'node:child_process'
import { mkdir, rm } from 'node:fs/promises'
import { promisify } from 'node:util'
import { aptInstall } from './apt.js'

const run = promisify(execFile)
const have = (bin: string): boolean => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0

/** Why a btrfs loop mount cannot be made here, or false (installs btrfs-progs when root). */
export function btrfsUnsupported (): string | false {
  if (process.getuid?.() !== 0) return 'needs root (loop mount, btrfs quota)'
  // the harness installs what it needs when it can (a fresh CI machine lacks btrfs-progs)
  if (!have('mkfs.btrfs')) aptInstall(['btrfs-progs'])
  for (const bin of ['btrfs', 'mkfs.btrfs', 'setpriv']) {
    if (!have(bin)) return `${bin} not installed (apt-get install -y btrfs-progs util-linux)`
  }
  return false
}

export interface BtrfsMount {
  mnt: string
  unmount: () => Promise<void>
}

/**
 * A fresh btrfs filesystem (a sparse image file) loop-mounted at `mnt`
 * (HARNESS.md §5). Throws with the mount's own message when the kernel or
 * container refuses loop devices; callers skip on that.
 */
export async function mountBtrfs (img: string, mnt: string, size = '256M'): Promise<BtrfsMount> {
  await mkdir(mnt, { recursive: true })
  await run('truncate', ['-s', size, img])
  await run('mkfs.btrfs', ['-q', '-f', img])
  await run('mount', ['-o', 'loop', img, mnt])
  let mounted = true
  return {
    mnt,
    unmount: async () => {
      if (!mounted) return
      mounted = false
      await run('umount', [mnt]).catch(async () => await run('umount', ['-l', mnt]))
      await rm(img, { force: true })
    }
  }
}
