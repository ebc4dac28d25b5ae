import { readFile } from 'node:fs/promises'
import type { ConnectionOptions } from 'node:tls'
import { Client, InvalidCredentialsError, NoSuchObjectError } from 'ldapts'
import type { Config } from '../config/index.js'
import { check, type Check } from './check.js'

const LDAP_TIMEOUT_MS = 5_000

/** TLS verification failures Node reports: the server's certificate does not chain to the CA we trust. */
const CA_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_SIGNATURE_FAILURE'
])
const DOWN_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET'])

/**
 * The box's OpenLDAP as the accounts service uses it: connect, TLS (ldaps://
 * or StartTLS) verified against `[ldap] ca_file`, bind with the password
 * file, read the base entry. Each way it can fail gets its own fix.
 */
export async function ldapCheck (ldap: Config['ldap']): Promise<Check> {
  if (ldap.url === null) return check('ldap', 'warn', 'accounts in OpenLDAP: not configured ([ldap] url is unset)', 'set [ldap] url, base_dn, bind_dn, password_file and ca_file; see docs/admin/install.md')
  const url = ldap.url
  const ldaps = url.startsWith('ldaps:')
  let tls: ConnectionOptions
  try {
    tls = { ca: ldap.caFile === null ? undefined : await readFile(ldap.caFile) }
  } catch (err) {
    return check('ldap', 'fail', `cannot read [ldap] ca_file: ${(err as Error).message}`, `point [ldap] ca_file at the PEM of the CA that signed slapd's certificate`)
  }
  let password: string
  try {
    password = (await readFile(ldap.passwordFile, 'utf8')).replace(/\r?\n$/, '')
  } catch (err) {
    return check('ldap', 'fail', `cannot read the bind password: ${(err as Error).message}`, `write the password of ${ldap.bindDn} into ${ldap.passwordFile} (chmod 600), or run centerctl setup ldap`)
  }
  const client = new Client({ url, timeout: LDAP_TIMEOUT_MS, connectTimeout: LDAP_TIMEOUT_MS, tlsOptions: ldaps ? tls : undefined })
  let stage = 'connect'
  try {
    if (!ldaps && ldap.starttls) { stage = 'StartTLS'; await client.startTLS(tls) }
    stage = 'bind'
    await client.bind(ldap.bindDn, password)
    stage = 'search'
    await client.search(ldap.baseDn, { scope: 'base', filter: '(objectClass=*)', attributes: ['objectClass'] })
  } catch (err) {
    return ldapFailure(ldap, stage, err as Error & { code?: unknown })
  } finally {
    await client.unbind().catch(() => {})
  }
  const how = ldaps ? 'ldaps' : ldap.starttls ? 'StartTLS' : 'NO TLS'
  if (!ldaps && !ldap.starttls) return check('ldap', 'warn', `${url} answers, bound as ${ldap.bindDn}, but without TLS: the bind password crosses the network in clear`, 'set [ldap] starttls = true (or use ldaps://) and ca_file')
  return check('ldap', 'ok', `${url} answers (${how}, certificate verified${ldap.caFile === null ? ' against the system CAs' : ` against ${ldap.caFile}`}), bound as ${ldap.bindDn}, ${ldap.baseDn} exists`)
}

function ldapFailure (ldap: Config['ldap'], stage: string, err: Error & { code?: unknown }): Check {
  const code = typeof err.code === 'string' ? err.code : ''
  const where = ldap.url ?? ''
  if (CA_ERRORS.has(code)) {
    return check('ldap', 'fail', `${where}: TLS certificate not trusted (${code}: ${err.message})`,
      `[ldap] ca_file${ldap.caFile === null ? ' is unset' : ` (${ldap.caFile})`} is not the CA that signed slapd's certificate; find the right one with openssl s_client -connect HOST:PORT${ldap.url?.startsWith('ldaps:') === true ? '' : ' -starttls ldap'} -showcerts, or fix olcTLSCertificateFile in slapd`)
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return check('ldap', 'fail', `${where}: TLS certificate refused (${code}: ${err.message})`, 'renew slapd\'s certificate for the name in [ldap] url (or use that name in the url)')
  }
  if (DOWN_ERRORS.has(code) || /timeout|ECONNREFUSED|closed/i.test(err.message)) {
    return check('ldap', 'fail', `${where} does not answer (${stage}: ${err.message})`, 'systemctl status slapd (journalctl -u slapd -e); check host and port in [ldap] url')
  }
  if (err instanceof InvalidCredentialsError) {
    return check('ldap', 'fail', `${where}: bind as ${ldap.bindDn} refused: invalid credentials`, `put the right password for ${ldap.bindDn} in ${ldap.passwordFile}, or fix [ldap] bind_dn`)
  }
  if (err instanceof NoSuchObjectError) {
    return check('ldap', 'fail', `${where}: base DN ${ldap.baseDn} does not exist`, 'fix [ldap] base_dn, or create the tree with centerctl setup ldap')
  }
  return check('ldap', 'fail', `${where}: ${stage} failed: ${err.message}${code === '' ? '' : ` (${code})`}`, 'check [ldap] in the config and slapd\'s log (journalctl -u slapd -e)')
}
