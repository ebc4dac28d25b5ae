export type { QuotaBackend, QuotaCheck, QuotaUsage } from './backend.js'
export { DEFAULT_USER_LIMIT_BYTES } from './backend.js'
export { btrfsQuota, parseQgroupShow, type BtrfsQuotaInit } from './btrfs.js'
export { setquotaQuota, setquotaArgv, parseQuotaOutput, type FsQuotaInit } from './setquota.js'
export { xfsQuota, xfsArgv, parseXfsQuota } from './xfs.js'
export { noQuota, type NoQuotaInit } from './none.js'
export { QuotaExceededError, QuotaBackendError, BadQuotaArgumentError } from './errors.js'
export { execRunner, type Runner, type RunResult } from './exec.js'

import type { QuotaBackend } from './backend.js'
import { btrfsQuota } from './btrfs.js'
import { noQuota } from './none.js'
import { setquotaQuota } from './setquota.js'
import { xfsQuota } from './xfs.js'
import { BadQuotaArgumentError } from './errors.js'

export type QuotaBackendKind = 'btrfs' | 'setquota' | 'xfs' | 'none'

/** Pick a backend by its config name (`[center] quota = "btrfs"`). */
export function createQuotaBackend (kind: QuotaBackendKind, opts: { root: string, mount?: string }): QuotaBackend {
  switch (kind) {
    case 'btrfs': return btrfsQuota({ root: opts.root })
    case 'none': return noQuota({ root: opts.root })
    case 'setquota':
    case 'xfs': {
      if (opts.mount === undefined) throw new BadQuotaArgumentError(`quota backend ${kind} needs the mount point of the filesystem holding ${opts.root}`)
      return kind === 'xfs' ? xfsQuota({ root: opts.root, mount: opts.mount }) : setquotaQuota({ root: opts.root, mount: opts.mount })
    }
    default: throw new BadQuotaArgumentError(`unknown quota backend ${String(kind)}`)
  }
}
