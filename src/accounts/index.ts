import type { Config } from '../config/index.js'
import { ConfigError } from '../errors.js'
import { directoryFromConfig } from './connect.js'
import { createQuotaBackend, type QuotaBackend } from '../quota/index.js'
import { AccountsService, type AccountsComponents, type AccountsInit } from './service.js'

export { AccountsService, ACCOUNTS_SERVICE, ACCOUNT_EVENTS } from './service.js'
export { directoryFromConfig, readPasswordFile } from './connect.js'

export type AccountsDeps = Omit<AccountsComponents, 'directory'>

/**
 * What the daemon holds when `[ldap] url` is set: the password file is read
 * at start (never at create, never logged), then the service starts.
 */
export class Accounts {
  service: AccountsService | null = null

  constructor (private readonly cfg: Config, private readonly init: Omit<AccountsInit, 'root' | 'maxEventBytes'>, private readonly deps: AccountsDeps) {}

  async start (): Promise<void> {
    if (this.service !== null) return
    const directory = await directoryFromConfig(this.cfg.ldap, this.deps.logger)
    const quota = await this.quotaBackend()
    const service = new AccountsService(
      { root: this.cfg.center.root, maxEventBytes: this.cfg.limits.maxEventBytes, userLimitBytes: this.cfg.center.userLimitBytes, ldapTransactions: this.cfg.ldap.transactions, ...this.init },
      { ...this.deps, directory, ...(quota === null ? {} : { quota }) })
    await service.start()
    this.service = service
    this.deps.logger.info({ ldap: this.cfg.ldap.url, root: this.cfg.center.root }, 'accounts service started')
  }

  /**
   * `[center] quota` other than none: the backend, its filesystem prepared
   * (btrfs quota enabled; idempotent). A backend that cannot be prepared
   * stops the start: users would otherwise get trees without a limit.
   */
  private async quotaBackend (): Promise<QuotaBackend | null> {
    const { quota, quotaMount, root } = this.cfg.center
    if (quota === 'none') return null
    try {
      const backend = createQuotaBackend(quota, { root, ...(quotaMount === null ? {} : { mount: quotaMount }) })
      await backend.init()
      return backend
    } catch (err) {
      throw new ConfigError(`[center] quota = "${quota}": ${root} cannot be prepared: ${(err as Error).message}`, { cause: err })
    }
  }

  async stop (): Promise<void> {
    const s = this.service
    this.service = null
    await s?.stop()
  }
}
