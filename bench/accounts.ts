import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { assignClaimUids, claimKey } from '../src/accounts/claims.js'
import type { AccountsSchema } from '../src/accounts/store.js'
import { loadConfig } from '../src/config/index.js'
import { callAdmin } from '../src/admin/client.js'
import { ed25519Line } from '../test/accounts/_keys.js'
import { createTestUser, joinPeers } from '../test/_util/peers.js'
import { waitFor } from '../test/_util/wait.js'
import { ldapUsers, startAccountPeer } from '../test/accounts/_peers.js'
import { pageClaims, startIngestRig } from '../test/accounts/_ingest.js'
import type { MdbSync } from '../test/_util/slapd.js'

interface Result { name: string, value: number, unit: string, target?: string }

const APPLY_N = 5000
const PAGE = 500
/** accounts on the existing peer in the join bench; CENTER_BENCH_ACCOUNTS=54000 is Hachyderm's size */
const E2E_N = joinAccounts()

function joinAccounts (): number {
  const raw = process.env.CENTER_BENCH_ACCOUNTS ?? '10000'
  const n = Number(raw)
  if (!Number.isSafeInteger(n) || n < 1 || n > 1_000_000) throw new Error(`CENTER_BENCH_ACCOUNTS must be a whole number from 1 to 1,000,000, not "${raw}"`)
  return n
}

/**
 * The apply path alone: pages of 500 claims into a fresh slapd (ldaps,
 * ppolicy) + PostgreSQL + /center/users, as a joining peer applies a
 * backfill page (AccountsService.ingest).
 */
const MDB_SYNC_HOW: Record<MdbSync, string> = {
  nometasync: 'slapd as `centerctl setup ldap` makes it: mdb nometasync, one fsync per write',
  full: 'slapd mdb default: two fsyncs per write',
  nosync: 'slapd with olcDbNoSync + checkpoint (unsafe, for comparison)'
}

async function benchApply (mdbSync: MdbSync): Promise<Result> {
  const rig = await startIngestRig({ mdbSync, transactions: false })
  try {
    const all = pageClaims('b', APPLY_N, ed25519Line('bench'))
    const t0 = performance.now()
    for (let i = 0; i < all.length; i += PAGE) await rig.svc.ingest(all.slice(i, i + PAGE), [], [])
    const s = (performance.now() - t0) / 1000
    const inLdap = (await rig.directory.listUsers()).length
    if (inLdap !== APPLY_N) throw new Error(`only ${inLdap} of ${APPLY_N} accounts in LDAP`)
    return { name: `accounts applied per second (${APPLY_N} in pages of ${PAGE}: LDAP user+group, claim rows, /center/users home; ${MDB_SYNC_HOW[mdbSync]})`, value: Math.round(APPLY_N / s), unit: 'accounts/s', target: '>= 500' }
  } finally {
    await rig.stop()
  }
}

/** End to end: a fresh peer joins a peer holding E2E_N accounts; from approval to all of them in its slapd. */
async function benchJoin (): Promise<Result[]> {
  const admin = await createTestUser()
  const a = await startAccountPeer('bench-a')
  const d = await startAccountPeer('bench-d', '', undefined, { mdbSync: (process.env.CENTER_BENCH_MDB_SYNC ?? 'nometasync') as MdbSync })
  try {
    const url = loadConfig({ configPath: a.peer.configPath }).database.url as string
    const db = new Kysely<AccountsSchema>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }) })
    const cs = pageClaims('j', E2E_N, ed25519Line('bench')).map((c) => ({ ...c, origin: a.peer.uuid }))
    const uids = assignClaimUids(cs)
    const rows = cs.map((c) => ({ name: c.name, origin: c.origin, created_at: new Date(c.createdAt), uid_number: uids.get(claimKey(c)) as number, gecos: '', shell: c.shell, keys: JSON.stringify(c.keys), state: 'active' as const, synced: true }))
    for (let i = 0; i < rows.length; i += 500) await db.insertInto('accounts').values(rows.slice(i, i + 500)).execute()
    await db.destroy()
    const t0 = Date.now()
    await joinPeers(a.peer, d.peer, admin.name)
    const joined = Date.now()
    // poll the status over the admin socket from here: a centerctl process per poll (about 0.5 s of CPU
    // each) or an LDAP search of every entry would compete with the writes we time on two cores
    const sock = loadConfig({ configPath: d.peer.configPath }).admin.socket
    let bf: any
    await waitFor('the backfill', async () => (bf = await callAdmin(sock, 'user.backfill')).state === 'done', 600_000, 100)
    const inLdap = (await ldapUsers(d.slapd)).size
    if (inLdap !== E2E_N) throw new Error(`backfill done but only ${inLdap} of ${E2E_N} accounts in LDAP`)
    const finished = Date.parse(bf.finishedAt)
    const started = Date.parse(bf.startedAt)
    process.stdout.write(`# join (invite to both links open) ${joined - t0} ms; backfill started ${started - t0} ms after approval, took ${finished - started} ms\n`)
    return [
      { name: `accounts backfilled per second into a joining peer's slapd (${E2E_N} accounts, two centerd processes, from the join request to the last account applied)`, value: Math.round(E2E_N / ((finished - t0) / 1000)), unit: 'accounts/s', target: '>= 500' },
      { name: `accounts backfilled per second into a joining peer's slapd (${E2E_N} accounts, two centerd processes, from backfill start to done)`, value: Math.round(E2E_N / ((finished - started) / 1000)), unit: 'accounts/s', target: '>= 500' }
    ]
  } finally {
    // a clean stop first: with CENTER_TEST_NODE_ARGS=--cpu-prof the daemons then write their profiles
    await d.peer.stop()
    await a.peer.stop()
    await d.destroy()
    await a.destroy()
    await admin.remove()
  }
}

export async function benchAccounts (): Promise<Result[]> {
  const out = process.env.CENTER_BENCH_JOIN_ONLY !== undefined ? await benchJoin() : [await benchApply('nometasync'), await benchApply('full'), ...await benchJoin()]
  for (const r of out) process.stdout.write(`${r.name}: ${r.value} ${r.unit} (target ${r.target ?? '-'})\n`)
  return out
}
