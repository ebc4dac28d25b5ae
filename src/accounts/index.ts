import { readFile, stat } from 'node:fs/promises'
import type { Config } from '../config/index.js'
import { ConfigError } from '../errors.js'
import type { Logger } from '../logger.js'
import { LdapDirectory } from './directory.js'
import { AccountsService, type AccountsComponents, type AccountsInit } from './service.js'

export { AccountsService, ACCOUNTS_SERVICE, ACCOUNT_EVENTS } from './service.js'

/** Read the LDAP bind password: the file must exist and be readable by its owner only (0600 or stricter). */
export async function readPasswordFile (path: string): Promise<string> {
  let st
  try {
    st = await stat(path)
  } catch (err) {
    throw new ConfigError(`[ldap] password_file ${path} cannot be read: ${(err as Error).message}`, { cause: err })
  }
  if ((st.mode & 0o077) !== 0) throw new ConfigError(`[ldap] password_file ${path} is mode ${(st.mode & 0o777).toString(8)}; it must be 0600`)
  const pw = (await readFile(path, 'utf8')).replace(/\r?\n$/, '')
  if (pw === '') throw new ConfigError(`[ldap] password_file ${path} is empty`)
  return pw
}

/** The LDAP directory as the config names it. Reads the password and CA files. */
export async function directoryFromConfig (ldap: Config['ldap'], logger: Logger): Promise<LdapDirectory> {
  if (ldap.url === null) throw new ConfigError('[ldap] url is not set: accounts are not provisioned on this peer')
  const bindPassword = await readPasswordFile(ldap.passwordFile)
  let ca: string | undefined
  if (ldap.caFile !== null) {
    try {
      ca = await readFile(ldap.caFile, 'utf8')
    } catch (err) {
      throw new ConfigError(`[ldap] ca_file ${ldap.caFile} cannot be read: ${(err as Error).message}`, { cause: err })
    }
  }
  const startTls = ldap.url.startsWith('ldap://') && ldap.starttls
  return new LdapDirectory({ url: ldap.url, baseDn: ldap.baseDn, bindDn: ldap.bindDn, bindPassword, ...(ca === undefined ? {} : { ca }), startTls }, { logger })
}

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
    const service = new AccountsService({ root: this.cfg.center.root, maxEventBytes: this.cfg.limits.maxEventBytes, ...this.init }, { ...this.deps, directory })
    await service.start()
    this.service = service
    this.deps.logger.info({ ldap: this.cfg.ldap.url, root: this.cfg.center.root }, 'accounts service started')
  }

  async stop (): Promise<void> {
    const s = this.service
    this.service = null
    await s?.stop()
  }
}
