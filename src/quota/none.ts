import { lstat, mkdir, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { DEFAULT_USER_LIMIT_BYTES, type QuotaBackend } from './backend.js'
import { ensureUsersDir, exists, ownTree, userPath } from './common.js'
import { assertLimit, assertSafePath } from './validate.js'

export interface NoQuotaInit {
  root: string
  /** @default DEFAULT_USER_LIMIT_BYTES */
  defaultLimitBytes?: number
}

/**
 * No filesystem quota: local writes are not limited, but the limit is still
 * known and enforced in the sync path (nothing over it is sent or accepted).
 * Usage is the apparent size of the tree, counted with lstat.
 */
export function noQuota (init: NoQuotaInit): QuotaBackend {
  const root = init.root
  assertSafePath(root)
  const defaultLimit = init.defaultLimitBytes ?? DEFAULT_USER_LIMIT_BYTES
  const limits = new Map<string, number>()

  return {
    name: 'none',
    root,
    async init () { await ensureUsersDir(root) },
    async ensureUserTree (name, uid, gid, limitBytes) {
      assertLimit(limitBytes)
      const dir = userPath(root, name)
      await ensureUsersDir(root)
      await mkdir(dir, { mode: 0o755 }).catch((err) => { if (err.code !== 'EEXIST') throw err })
      await ownTree(dir, uid, gid)
      limits.set(name, limitBytes)
      return dir
    },
    async usage (name) {
      return { bytes: await apparentSize(userPath(root, name)), limit: limits.get(name) ?? defaultLimit }
    },
    async setLimit (name, limitBytes) {
      assertLimit(limitBytes)
      userPath(root, name)
      limits.set(name, limitBytes)
    },
    async removeUserTree (name) {
      const dir = userPath(root, name)
      if (await exists(dir)) await rm(dir, { recursive: true, force: true })
      limits.delete(name)
    },
    async check () {
      return { backend: 'none', ok: true, problems: [`no filesystem quota on ${root}: limits are enforced only by sync, local writes are not limited`] }
    }
  }
}

async function apparentSize (dir: string): Promise<number> {
  let total = 0
  for (const ent of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name)
    if (ent.isDirectory()) total += await apparentSize(p)
    else if (ent.isFile()) total += (await lstat(p)).size
  }
  return total
}
