import { lstat, statfs } from 'node:fs/promises'
import type { QuotaBackend, QuotaCheck, QuotaUsage } from './backend.js'
import { ensureUsersDir, exists, ownTree, userPath } from './common.js'
import { QuotaBackendError } from './errors.js'
import { execRunner, type Runner } from './exec.js'
import { assertLimit, assertSafePath } from './validate.js'

export interface BtrfsQuotaInit {
  /** the /center root; must be on btrfs */
  root: string
  /** @default 'btrfs' */
  btrfs?: string
  run?: Runner
}

const BTRFS_MAGIC = 0x9123683e
/** the inode number of every btrfs subvolume root */
const SUBVOL_ROOT_INO = 256

/** Whether `dir` is the root of a btrfs subvolume (not a plain directory inside one). */
export async function isSubvolumeRoot (dir: string): Promise<boolean> {
  const st = await lstat(dir)
  return st.isDirectory() && st.ino === SUBVOL_ROOT_INO
}

/**
 * btrfs qgroups: each user tree is its own subvolume with a qgroup limit on
 * referenced bytes. The kernel enforces it for everyone, root included; a
 * write past it fails with EDQUOT (HARNESS.md §5). Accounting is updated at
 * transaction commit, so `usage` syncs the filesystem first.
 */
export function btrfsQuota (init: BtrfsQuotaInit): QuotaBackend {
  const root = init.root
  assertSafePath(root)
  const bin = init.btrfs ?? 'btrfs'
  const run = init.run ?? execRunner

  async function subvolumeId (dir: string): Promise<string> {
    const { stdout } = await run(bin, ['inspect-internal', 'rootid', dir])
    const id = stdout.trim()
    if (!/^\d+$/.test(id)) throw new QuotaBackendError(`unexpected rootid output for ${dir}: ${JSON.stringify(stdout)}`)
    return id
  }

  return {
    name: 'btrfs',
    root,
    async init () {
      await ensureUsersDir(root)
      await run(bin, ['quota', 'enable', root])
    },
    async ensureUserTree (name, uid, gid, limitBytes) {
      assertLimit(limitBytes)
      const dir = userPath(root, name)
      await ensureUsersDir(root)
      if (!await exists(dir)) {
        await run(bin, ['subvolume', 'create', dir])
      } else if (!await isSubvolumeRoot(dir)) {
        throw new QuotaBackendError(`${dir} exists but is not a btrfs subvolume; move it aside and run again`)
      }
      await ownTree(dir, uid, gid)
      await run(bin, ['qgroup', 'limit', String(limitBytes), dir])
      return dir
    },
    async usage (name) {
      const dir = userPath(root, name)
      const id = await subvolumeId(dir)
      await run(bin, ['filesystem', 'sync', dir])
      const { stdout } = await run(bin, ['qgroup', 'show', '-re', '--raw', dir])
      return parseQgroupShow(stdout, `0/${id}`)
    },
    async setLimit (name, limitBytes) {
      assertLimit(limitBytes)
      await run(bin, ['qgroup', 'limit', String(limitBytes), userPath(root, name)])
    },
    async removeUserTree (name) {
      const dir = userPath(root, name)
      if (!await exists(dir)) return
      if (!await isSubvolumeRoot(dir)) throw new QuotaBackendError(`${dir} is not a btrfs subvolume; not removing it`)
      await run(bin, ['subvolume', 'delete', '-c', dir])
      // the qgroup goes away by itself once the subvolume is cleaned (HARNESS.md §5)
      await run(bin, ['subvolume', 'sync', root])
    },
    async check () {
      const problems: string[] = []
      try {
        const fs = await statfs(root)
        if (fs.type !== BTRFS_MAGIC) problems.push(`${root} is not on btrfs (statfs type 0x${fs.type.toString(16)})`)
      } catch (err) {
        problems.push(`cannot statfs ${root}: ${(err as Error).message}`)
      }
      if (problems.length === 0) {
        try {
          await run(bin, ['qgroup', 'show', '--raw', root])
        } catch (err) {
          problems.push(`btrfs quotas not usable on ${root} (run \`btrfs quota enable ${root}\`): ${(err as Error).message}`)
        }
      }
      return { backend: 'btrfs', ok: problems.length === 0, problems } satisfies QuotaCheck
    }
  }
}

/**
 * Parse `btrfs qgroup show -re --raw` (btrfs-progs 6.x): a header line, a
 * dashes line, then `qgroupid rfer excl max_rfer max_excl [path]`. The limit
 * set by `btrfs qgroup limit` is on referenced bytes (max_rfer).
 */
export function parseQgroupShow (stdout: string, qgroupId: string): QuotaUsage {
  for (const line of stdout.split('\n')) {
    const cols = line.trim().split(/\s+/)
    if (cols[0] !== qgroupId) continue
    const rfer = Number(cols[1])
    const maxRfer = cols[3]
    if (!Number.isSafeInteger(rfer) || maxRfer === undefined) break
    return { bytes: rfer, limit: maxRfer === 'none' ? null : Number(maxRfer) }
  }
  throw new QuotaBackendError(`qgroup ${qgroupId} not found in btrfs qgroup show output`)
}
