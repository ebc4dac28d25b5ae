import { lstat, mkdir, rm } from 'node:fs/promises'
import type { QuotaBackend, QuotaUsage } from './backend.js'
import { ensureUsersDir, exists, ownTree, userPath } from './common.js'
import { QuotaBackendError } from './errors.js'
import { execRunner, type Runner } from './exec.js'
import { assertId, assertLimit, assertSafePath } from './validate.js'

export interface FsQuotaInit {
  /** the /center root */
  root: string
  /** mount point of the filesystem holding root (setquota/xfs_quota want it) */
  mount: string
  run?: Runner
}

type Argv = [string, string[]]

/** What differs between quota tools keyed by a numeric id (the user's uidNumber). */
export interface FsQuotaCommands {
  name: string
  /** commands after a tree is made, before its limit is set (xfs: bind the project) */
  attach?: (dir: string, id: number, mount: string) => Argv[]
  /** commands before a tree is removed, after its limit is cleared */
  detach?: (dir: string, id: number, mount: string) => Argv[]
  limit: (id: number, limitBytes: number, mount: string) => Argv
  usage: (id: number, mount: string) => Argv
  parseUsage: (stdout: string) => QuotaUsage
  state: (mount: string) => Argv
  /** a problem line when the state output says quotas are not enforced */
  stateProblem: (stdout: string, mount: string) => string | null
  stateFailure: (mount: string) => string
}

/** Block quotas count 1 KiB blocks; round a byte limit up so it is never tighter than asked. */
export const kib = (bytes: number): number => Math.ceil(bytes / 1024)

/**
 * A QuotaBackend over external quota tools: one id per user tree (the
 * owner's uid), so the limit is the same number on every peer.
 */
export function fsQuotaBackend (init: FsQuotaInit, cmd: FsQuotaCommands): QuotaBackend {
  const { root, mount } = init
  assertSafePath(root)
  assertSafePath(mount)
  const run = init.run ?? execRunner
  const runAll = async (list: Argv[] | undefined): Promise<void> => { for (const a of list ?? []) await run(...a) }

  async function idOf (name: string): Promise<number> {
    const st = await lstat(userPath(root, name))
    assertId('uid', st.uid)
    return st.uid
  }

  return {
    name: cmd.name,
    root,
    async init () { await ensureUsersDir(root) },
    async ensureUserTree (name, uid, gid, limitBytes) {
      assertId('uid', uid)
      assertLimit(limitBytes)
      const dir = userPath(root, name)
      await ensureUsersDir(root)
      await mkdir(dir, { mode: 0o755 }).catch((err) => { if (err.code !== 'EEXIST') throw err })
      await ownTree(dir, uid, gid)
      await runAll(cmd.attach?.(dir, uid, mount))
      await run(...cmd.limit(uid, limitBytes, mount))
      return dir
    },
    async usage (name) {
      const { stdout } = await run(...cmd.usage(await idOf(name), mount))
      return cmd.parseUsage(stdout)
    },
    async setLimit (name, limitBytes) {
      assertLimit(limitBytes)
      await run(...cmd.limit(await idOf(name), limitBytes, mount))
    },
    async removeUserTree (name) {
      const dir = userPath(root, name)
      if (!await exists(dir)) return
      const id = await idOf(name)
      await run(...cmd.limit(id, 0, mount))
      await runAll(cmd.detach?.(dir, id, mount))
      await rm(dir, { recursive: true, force: true })
    },
    async check () {
      const problems: string[] = []
      try {
        const { stdout } = await run(...cmd.state(mount))
        const p = cmd.stateProblem(stdout, mount)
        if (p !== null) problems.push(p)
      } catch (err) {
        problems.push(`${cmd.stateFailure(mount)}: ${(err as Error).message}`)
      }
      return { backend: cmd.name, ok: problems.length === 0, problems }
    }
  }
}

/**
 * Both `quota -u -w -p -l -f MNT UID` and `xfs_quota quota -p -N -n -b ID`
 * print `device used[*] soft hard ...` in KiB: the first such line counts.
 */
export function parseKibQuotaLine (stdout: string, tool: string): QuotaUsage {
  for (const line of stdout.split('\n')) {
    const cols = line.trim().split(/\s+/)
    if (cols.length < 4 || !cols[0]?.startsWith('/')) continue
    const used = Number(cols[1]?.replace(/\*$/, ''))
    const hard = Number(cols[3])
    if (!Number.isSafeInteger(used) || !Number.isSafeInteger(hard)) continue
    return { bytes: used * 1024, limit: hard === 0 ? null : hard * 1024 }
  }
  throw new QuotaBackendError(`no quota line in ${tool} output`)
}
