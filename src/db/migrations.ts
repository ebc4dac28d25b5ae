import { readdir, readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely'

/** `sql/` at the package root, next to `dist/`. */
export const SQL_DIR = fileURLToPath(new URL('../../../sql/', import.meta.url))

const NAME = /^\d{8}T\d{9}Z-[a-z0-9-]+\.sql$/

/**
 * Maps `sql/<timestamp>-<name>.sql` to Kysely migrations. Kysely's Migrator
 * supplies the lock, the order check and the transaction around each file.
 */
export class SqlFileMigrationProvider implements MigrationProvider {
  constructor (private readonly dir: string = SQL_DIR) {}

  async getMigrations (): Promise<Record<string, Migration>> {
    const files = (await readdir(this.dir)).filter((f) => NAME.test(f)).sort()
    const out: Record<string, Migration> = {}
    for (const file of files) {
      const text = await readFile(`${this.dir}/${file}`, 'utf8')
      out[file.replace(/\.sql$/, '')] = { up: async (db: Kysely<any>) => { await runStatements(db, text) } }
    }
    return out
  }
}

/**
 * PGlite's query path is the extended protocol (one statement per call), so
 * files are split into statements here. Dollar-quoted bodies are kept whole.
 */
export function splitStatements (text: string): string[] {
  const out: string[] = []
  let cur = ''
  let dollar: string | null = null
  for (const line of text.split('\n')) {
    const stripped: string = dollar === null ? line.replace(/--.*$/, '') : line
    for (const m of stripped.matchAll(/\$[A-Za-z_]*\$/g)) {
      const tag: string = m[0]
      dollar = dollar === null ? tag : (tag === dollar ? null : dollar)
    }
    cur += stripped + '\n'
    if (dollar === null && /;\s*$/.test(stripped)) {
      if (cur.trim() !== ';') out.push(cur.trim())
      cur = ''
    }
  }
  if (cur.trim() !== '') out.push(cur.trim())
  return out
}

async function runStatements (db: Kysely<any>, text: string): Promise<void> {
  for (const stmt of splitStatements(text)) await sql.raw(stmt).execute(db)
}
