import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'kysely'
import pino from 'pino'
import { Database } from '../../src/db/index.js'
import { splitStatements } from '../../src/db/migrations.js'
import { createTestDatabase } from '../_util/pg.js'

const logger = pino({ level: 'silent' })
const TABLES = [
  'account_backfill', 'account_bans', 'account_deletions', 'account_locks', 'account_peer_backfill', 'accounts',
  'appdata', 'appmetadata', 'bans', 'inbox', 'invites', 'join_attempts', 'join_requests', 'metadata', 'outbox',
  'own_key_rotations', 'peer_candidates', 'peer_previous_keys', 'peer_records', 'peer_seq', 'peers',
  'ratchet_sessions', 'resources', 'seen_nonces', 'service_sends', 'services', 'tokens'
]
/** every file in sql/, in name order: the order they must apply in */
const MIGRATIONS = readdirSync(new URL('../../../sql/', import.meta.url)).filter((f) => f.endsWith('.sql')).sort().map((f) => f.replace(/\.sql$/, ''))

async function tables (d: Database): Promise<string[]> {
  const r = await sql<{ t: string }>`select table_name as t from information_schema.tables where table_schema = 'public' and table_name not like 'kysely_%' order by 1`.execute(d.db)
  return r.rows.map((x) => x.t)
}

test('the SQL splitter keeps dollar-quoted bodies whole and drops comments', () => {
  const text = "-- c\nCREATE TABLE a (x int); -- tail\nCREATE FUNCTION f() RETURNS int AS $$\nBEGIN\n  RETURN 1;\nEND;\n$$ LANGUAGE plpgsql;\nSELECT 1;\n"
  const s = splitStatements(text)
  assert.equal(s.length, 3)
  assert.match(s[1] ?? '', /RETURN 1;\nEND;\n\$\$ LANGUAGE plpgsql;$/)
})

test('migrations apply on real PostgreSQL, once, and create RFC 3 tables and ours', async () => {
  const { url, drop } = await createTestDatabase('center_migr')
  const d = Database.open({ url, pgliteDir: '' }, { logger })
  try {
    assert.ok(MIGRATIONS.length >= 2)
    assert.deepEqual(await d.migrateToLatestOrThrow(), MIGRATIONS)
    assert.deepEqual(await d.migrateToLatestOrThrow(), [], 'a second run applies nothing')
    assert.deepEqual(await tables(d), TABLES)
  } finally {
    await d.close()
    await drop()
  }
})

test('the same migrations apply on the embedded PGlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'center-pglite-'))
  const d = Database.open({ url: null, pgliteDir: join(dir, 'pg') }, { logger })
  try {
    await d.migrateToLatestOrThrow()
    assert.deepEqual(await tables(d), TABLES)
    await d.db.insertInto('peer_seq').values({ peer_uuid: '00000000-0000-4000-8000-000000000001', next_out: 1, last_in: 0 }).execute()
    const r = await d.db.selectFrom('peer_seq').selectAll().executeTakeFirstOrThrow()
    assert.equal(Number(r.next_out), 1)
  } finally {
    await d.close()
    rmSync(dir, { recursive: true, force: true })
  }
})
