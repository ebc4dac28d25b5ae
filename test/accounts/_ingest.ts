import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { Database } from '../../src/db/index.js'
import { LdapDirectory, type LdapDirectoryComponents, type LdapDirectoryInit } from '../../src/accounts/directory.js'
import { AccountsService } from '../../src/accounts/service.js'
import type { ClaimData } from '../../src/accounts/store.js'
import { createTestDatabase } from '../_util/pg.js'
import { startSlapd, type MdbSync, type Slapd } from '../_util/slapd.js'

/** The peer new claims come from in these pages. */
export const PAGE_ORIGIN = '00000000-0000-4000-8000-000000000002'

/** `n` claims from PAGE_ORIGIN, named PREFIX0…, in claim order, as a backfill page carries them. */
export function pageClaims (prefix: string, n: number, key: string): ClaimData[] {
  const t0 = Date.now() - 3600_000
  return Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}`, origin: PAGE_ORIGIN, createdAt: t0 + i, gecos: '', shell: '/bin/sh', keys: [key] }))
}

export interface IngestRig<D extends LdapDirectory> {
  svc: AccountsService
  directory: D
  slapd: Slapd
  database: Database
  /** the /center root */
  root: string
  stop: () => Promise<void>
}

/**
 * The apply path of a joining peer alone (AccountsService.ingest): a fresh
 * slapd (ldaps, ppolicy), a PostgreSQL database and a /center root. ingest
 * uses neither the dispatcher, the registry nor the peer directory, so they
 * are left out.
 */
export async function startIngestRig<D extends LdapDirectory = LdapDirectory> (opts: {
  /** how slapd's back-mdb syncs a commit; @default 'nometasync', as `centerctl setup ldap` makes it */
  mdbSync?: MdbSync
  /** RFC 5805 transactions for new users (the product's default is off, `[ldap] transactions`); @default true */
  transactions?: boolean
  /** build the directory (a subclass that injects a fault); @default LdapDirectory */
  directory?: (init: LdapDirectoryInit, c: LdapDirectoryComponents) => D
} = {}): Promise<IngestRig<D>> {
  const slapd = await startSlapd({ mdbSync: opts.mdbSync ?? 'nometasync' })
  const pgdb = await createTestDatabase('center_ingest')
  const dir = mkdtempSync(join(tmpdir(), 'cn3-ingest-'))
  const logger = pino({ level: 'silent' })
  const database = Database.open({ url: pgdb.url, pgliteDir: '' }, { logger })
  const stop = async (): Promise<void> => {
    await database.close()
    await pgdb.drop().catch(() => {})
    await slapd.stop()
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    await database.migrateToLatestOrThrow()
    const init = { url: slapd.url, baseDn: slapd.baseDn, bindDn: slapd.bindDn, bindPassword: slapd.bindPassword, ca: slapd.ca }
    const directory = opts.directory?.(init, { logger }) ?? new LdapDirectory(init, { logger }) as D
    const none = null as any
    const root = join(dir, 'center')
    const svc = new AccountsService({ root, maxEventBytes: 64 * 1024, ldapTransactions: opts.transactions ?? true }, { db: database.db, self: '00000000-0000-4000-8000-000000000001', dispatcher: none, registry: none, peers: none, directory, logger })
    return { svc, directory, slapd, database, root, stop }
  } catch (err) {
    await stop()
    throw err
  }
}
