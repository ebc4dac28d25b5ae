/** What `usage()` reports; `limit` is null when no limit is set. */
export interface QuotaUsage {
  bytes: number
  limit: number | null
}

export interface QuotaCheck {
  backend: string
  ok: boolean
  /** one line per problem, for `centerctl doctor` */
  problems: string[]
}

/**
 * A way to keep each `/center/users/<name>` tree under its quota on this box.
 * Whatever the backend, the sync path also enforces the limit itself
 * (`checkIncoming` in src/sync/tree.ts), so `noQuota` is still safe for sync;
 * it just cannot stop a local user from writing past the limit.
 */
export interface QuotaBackend {
  readonly name: string
  /** the tree root (e.g. /center); user trees are `<root>/users/<name>` */
  readonly root: string
  /** one-time preparation of the filesystem (idempotent) */
  init: () => Promise<void>
  /** create the user's tree if missing, owned by uid:gid, and set its limit */
  ensureUserTree: (name: string, uid: number, gid: number, limitBytes: number) => Promise<string>
  usage: (name: string) => Promise<QuotaUsage>
  setLimit: (name: string, limitBytes: number) => Promise<void>
  removeUserTree: (name: string) => Promise<void>
  check: () => Promise<QuotaCheck>
}

/** 5 MB per user, the network default (PRODUCT.md). */
export const DEFAULT_USER_LIMIT_BYTES = 5 * 1024 * 1024
