import { readFile, stat } from 'node:fs/promises'
import type { Config } from '../config/index.js'
import { ConfigError } from '../errors.js'
import type { Logger } from '../logger.js'
import { LdapDirectory } from './directory.js'

/*
 * Kept apart from the accounts service: center-authorized-keys runs once per
 * SSH login and needs only this, not the service and the dispatcher behind
 * it (loading those doubled its start-up time).
 */

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
