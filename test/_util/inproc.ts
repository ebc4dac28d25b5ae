import { Writable } from 'node:stream'
import { mkdtempSync, writeFileSync, rmSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Daemon } from '../../src/daemon.js'
import { loadConfig } from '../../src/config/index.js'
import { createRootLogger } from '../../src/logger.js'
import { createTestDatabase } from './pg.js'
import { freePort, waitFor } from './wait.js'

export interface InProcessPeer {
  daemon: Daemon
  dir: string
  uuid: string
  /** every log line this daemon wrote, parsed */
  logs: Array<Record<string, any>>
  stop: () => Promise<void>
}

/** A real Daemon in this process (real PostgreSQL, real sockets), with its log lines kept in memory. */
export async function startInProcessPeer (name: string, extraToml = ''): Promise<InProcessPeer> {
  const dir = mkdtempSync(join(tmpdir(), `center-${name}-`))
  const db = await createTestDatabase(`center_${name}`)
  const port = await freePort()
  writeFileSync(join(dir, 'center.toml'), [
    '[peer]', `domain = "${name}.center.test"`, 'admin = "root"', `listen = "127.0.0.1:${port}"`,
    '[database]', `url = "${db.url}"`, '[metrics]', 'listen = "off"', extraToml
  ].join('\n') + '\n')
  const logs: Array<Record<string, any>> = []
  const destination = new Writable({
    write (chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line.startsWith('{')) logs.push(JSON.parse(line))
      cb()
    }
  })
  const daemon = await Daemon.create(loadConfig({ configPath: join(dir, 'center.toml') }), { logger: createRootLogger({ level: 'debug', destination }) })
  await daemon.start()
  return {
    daemon,
    dir,
    uuid: daemon.ctx.identity.uuid,
    logs,
    stop: async () => {
      await daemon.destroy()
      await db.drop().catch(() => {})
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** Join `newcomer` to `sponsor` through the same calls centerctl makes. */
export async function joinInProcess (sponsor: InProcessPeer, newcomer: InProcessPeer, admin: string): Promise<void> {
  const inv = await sponsor.daemon.ctx.join.invite(admin)
  const secret = readFileSync(inv.path, 'utf8').trim()
  await newcomer.daemon.ctx.join.join({ peer: inv.address, uuid: inv.uuid, publicKey: inv.publicKey, admin, secretFile: inv.secretFile, secret })
  const res = await sponsor.daemon.ctx.join.approve(newcomer.uuid)
  if (!res.delivered) throw new Error(`approve: ${res.error ?? ''}`)
  await waitFor('the link to open both ways', () =>
    sponsor.daemon.ctx.links.get(newcomer.uuid)?.state === 'open' && newcomer.daemon.ctx.links.get(sponsor.uuid)?.state === 'open', 20_000)
}

/** Log lines of refusals with this code. */
export function refusals (p: InProcessPeer, code: string): Array<Record<string, any>> {
  return p.logs.filter((l) => l.msg === 'refused' && l.code === code)
}
