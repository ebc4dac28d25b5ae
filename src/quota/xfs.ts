import type { QuotaBackend, QuotaUsage } from './backend.js'
import { fsQuotaBackend, kib, parseKibQuotaLine, type FsQuotaInit } from './fs-quota.js'

/**
 * The exact commands the xfs backend runs. xfs_quota parses its own `-c`
 * string on whitespace (no shell is involved), which is why paths are
 * refused when they hold whitespace or quotes (assertSafePath) and ids are
 * plain integers. Not executable here: the kernel has no XFS_QUOTA.
 */
export const xfsArgv = {
  project: (dir: string, projid: number, mount: string): [string, string[]] =>
    ['xfs_quota', ['-x', '-c', `project -s -p ${dir} ${projid}`, mount]],
  limit: (projid: number, limitBytes: number, mount: string): [string, string[]] =>
    ['xfs_quota', ['-x', '-c', `limit -p bsoft=0 bhard=${kib(limitBytes)}k ${projid}`, mount]],
  usage: (projid: number, mount: string): [string, string[]] =>
    ['xfs_quota', ['-x', '-c', `quota -p -N -n -b ${projid}`, mount]],
  clear: (dir: string, projid: number, mount: string): [string, string[]] =>
    ['xfs_quota', ['-x', '-c', `project -C -p ${dir} ${projid}`, mount]],
  state: (mount: string): [string, string[]] =>
    ['xfs_quota', ['-x', '-c', 'state -p', mount]]
}

/**
 * XFS project quotas: one project per user tree, project id = the user's
 * uidNumber (the same on every peer), so the limit covers exactly the tree.
 * The filesystem must be mounted with `prjquota`.
 */
export function xfsQuota (init: FsQuotaInit): QuotaBackend {
  return fsQuotaBackend(init, {
    name: 'xfs',
    attach: (dir, id, mount) => [xfsArgv.project(dir, id, mount)],
    detach: (dir, id, mount) => [xfsArgv.clear(dir, id, mount)],
    limit: xfsArgv.limit,
    usage: xfsArgv.usage,
    parseUsage: parseXfsQuota,
    state: xfsArgv.state,
    stateProblem: (stdout, mount) => (/Enforcement:\s*ON/i.test(stdout) ? null : `project quota enforcement is off on ${mount} (mount with prjquota)`),
    stateFailure: (mount) => `cannot query xfs project quota state of ${mount}`
  })
}

/** Parse `quota -p -N -n -b ID`: `device used soft hard warn/grace [...]`, in KiB. */
export const parseXfsQuota = (stdout: string): QuotaUsage => parseKibQuotaLine(stdout, 'xfs_quota')
