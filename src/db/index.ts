import { mkdirSync } from 'node:fs'
import { Kysely, Migrator, PostgresDialect, type Transaction, type LogEvent } from 'kysely'
import pg from 'pg'
import { PGlite } from '@electric-sql/pglite'
import { PGliteDialect } from 'kysely-pglite-dialect'
import { MigrationError } from '../errors.js'
import type { Logger } from '../logger.js'
import { SqlFileMigrationProvider } from './migrations.js'
import type { Schema } from './schema.js'

export type { Schema }
export type Db = Kysely<Schema>
export type Tx = Transaction<Schema>
export type DbOrTx = Db | Tx

// bigint columns come back as strings by default; our counters fit in a double
pg.types.setTypeParser(20, (v: string) => Number(v))

export interface DatabaseInit {
  /** postgres:// URL; null selects PGlite in `pgliteDir` */
  url: string | null
  pgliteDir: string
  /** @default 10 */
  poolSize?: number
}

export interface DatabaseComponents { logger: Logger }

/** Owns the connection pool (or the embedded PGlite) and the migrations. */
export class Database {
  readonly db: Db
  readonly embedded: boolean
  private closed = false

  private constructor (db: Db, embedded: boolean) {
    this.db = db
    this.embedded = embedded
  }

  static open (init: DatabaseInit, components: DatabaseComponents): Database {
    const log = components.logger
    const onLog = (e: LogEvent): void => {
      if (e.level === 'error') log.debug({ err: e.error, ms: e.queryDurationMillis }, 'query failed')
    }
    if (init.url !== null) {
      const pool = new pg.Pool({ connectionString: init.url, max: init.poolSize ?? 10 })
      pool.on('error', (err) => { log.warn({ err }, 'idle database connection failed') })
      return new Database(new Kysely<Schema>({ dialect: new PostgresDialect({ pool }), log: onLog }), false)
    }
    mkdirSync(init.pgliteDir, { recursive: true, mode: 0o700 })
    const lite = new PGlite(init.pgliteDir)
    return new Database(new Kysely<Schema>({ dialect: new PGliteDialect(lite), log: onLog }), true)
  }

  /** Apply every pending `sql/*.sql` under Kysely's migration lock, or throw. */
  async migrateToLatestOrThrow (): Promise<string[]> {
    const migrator = new Migrator({ db: this.db, provider: new SqlFileMigrationProvider() })
    const { error, results } = await migrator.migrateToLatest()
    const failed = results?.find((r) => r.status === 'Error')
    if (error !== undefined || failed !== undefined) {
      throw new MigrationError(`migration ${failed?.migrationName ?? ''} failed: ${(error as Error | undefined)?.message ?? 'unknown error'}`, { cause: error })
    }
    return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName)
  }

  async transaction<T> (fn: (tx: Tx) => Promise<T>): Promise<T> {
    return await this.db.transaction().execute(fn)
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.db.destroy()
  }
}
