import type { QuotaBackend, QuotaUsage } from './backend.js'
import { fsQuotaBackend, kib, parseKibQuotaLine, type FsQuotaInit } from './fs-quota.js'

export { kib, type FsQuotaInit }

/**
 * The exact commands the setquota backend runs. Kept apart so they can be
 * unit-tested: this box's kernel has no QFMT_V2, so ext4 user quotas cannot
 * be exercised here (HARNESS.md §5).
 */
export const setquotaArgv = {
  limit: (uid: number, limitBytes: number, mount: string): [string, string[]] =>
    ['setquota', ['-u', String(uid), '0', String(kib(limitBytes)), '0', '0', mount]],
  usage: (uid: number, mount: string): [string, string[]] =>
    ['quota', ['-u', '-w', '-p', '-l', '-f', mount, String(uid)]],
  state: (mount: string): [string, string[]] =>
    ['quotaon', ['-p', '-u', mount]]
}

/** Parse `quota -u -w -p -l -f MNT UID` (KiB; a `*` marks a user over the soft limit). */
export const parseQuotaOutput = (stdout: string): QuotaUsage => parseKibQuotaLine(stdout, 'quota')

/**
 * ext4 (or any VFS-quota filesystem) user quotas through quota-tools. The
 * limit is per uid across the whole filesystem, so /center must be a
 * filesystem of its own where users own nothing but their tree.
 */
export function setquotaQuota (init: FsQuotaInit): QuotaBackend {
  return fsQuotaBackend(init, {
    name: 'setquota',
    limit: setquotaArgv.limit,
    usage: setquotaArgv.usage,
    parseUsage: parseQuotaOutput,
    state: setquotaArgv.state,
    stateProblem: (stdout, mount) => (/\bis on\b/.test(stdout) ? null : `user quota is not on for ${mount}: ${stdout.trim()}`),
    stateFailure: (mount) => `cannot query quota state of ${mount} (quota tools installed? kernel QFMT_V2?)`
  })
}
