import { readFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { callAdmin } from '../../admin/client.js'
import { table } from '../output.js'
import { backfillLine, watchBackfill } from '../backfill.js'
import type { CliContext } from '../index.js'

export function registerPeerCommands (program: Command, ctx: CliContext): void {
  const peer = program.command('peer').description('peers: invitations, joining, the peer list')
  const call = async (method: string, params: Record<string, unknown> = {}): Promise<any> => await callAdmin(ctx.config().admin.socket, method, params)

  peer.command('invite <user>')
    .description('write a secret file into USER\'s home here, for them to join their own box to this one')
    .option('--proofs <n>', 'secret files the newcomer must prove before approval', '1')
    .action(async (user: string, o: { proofs: string }) => {
      const r = await call('peer.invite', { admin: user, proofs: Number(o.proofs) })
      ctx.out.print([
        `secret file ${r.path} written for ${user} (readable only by them).`,
        'On the new box, they run:',
        `  centerctl peer join --peer ${r.address} --uuid ${r.uuid} --key PEER_KEY.asc --admin ${user} --secret-file ${r.secretFile} --secret "$(cat ~/${r.secretFile})"`,
        `where PEER_KEY.asc holds this box's public key (fingerprint ${r.fingerprint}; \`centerctl whoami\` prints it).`
      ].join('\n'), r)
    })

  peer.command('join')
    .description('ask an existing peer to admit this box (sends new-peer-server)')
    .requiredOption('--peer <host:port>', 'the existing peer\'s address')
    .requiredOption('--uuid <uuid>', 'the existing peer\'s UUID')
    .requiredOption('--key <file>', 'file with the existing peer\'s armored OpenPGP public key')
    .requiredOption('--admin <user>', 'your user name on the existing peer')
    .requiredOption('--secret-file <name>', 'name of the secret file in your home there')
    .requiredOption('--secret <value>', 'the value in that file')
    .option('--wait', 'stay until the peer\'s sysadmin approves, then show the accounts backfill as a progress bar until this box has every account')
    .action(async (o: { peer: string, uuid: string, key: string, admin: string, secretFile: string, secret: string, wait?: boolean }) => {
      const publicKey = await readFile(o.key, 'utf8')
      const r = await call('peer.join', { peer: o.peer, uuid: o.uuid, publicKey, admin: o.admin, secretFile: o.secretFile, secret: o.secret })
      const more = r.proofs < r.proofsNeeded ? ` It needs ${r.proofsNeeded - r.proofs} more secret file(s): ask for another invitation.` : ''
      ctx.out.print(`join request accepted by ${o.peer}: ${String(r.state)}, waiting for its sysadmin to approve.${more}`, r)
      if (o.wait !== true || more !== '') return
      await waitForApproval(call, o.uuid)
      console.error(`approved: ${o.uuid} admitted this box`)
      // accounts not provisioned here ([ldap] url unset): nothing to copy
      if (await call('user.backfill').then(() => true, () => false)) {
        const end = await watchBackfill(call)
        console.error(`backfill done: ${end.received} accounts from ${end.peer ?? '-'}; this box is a full peer`)
      }
    })

  peer.command('requests')
    .description('join requests waiting for a decision')
    .action(async () => {
      const rows = await call('peer.requests')
      ctx.out.print(table(rows, ['uuid', 'domain', 'address', 'admin', 'proofs', 'proofsNeeded', 'introducedBy', 'state']), rows)
    })

  peer.command('approve <uuid>')
    .description('admit a peer that asked to join (sends add-peer-server)')
    .action(async (uuid: string) => {
      const r = await call('peer.approve', { uuid })
      ctx.out.print(r.delivered === true ? `approved ${uuid}; add-peer-server delivered` : `approved ${uuid}, but: ${String(r.error)}`, r)
      if (r.delivered !== true) process.exitCode = 1
    })

  peer.command('reject <uuid>')
    .description('refuse a join request')
    .action(async (uuid: string) => { ctx.out.print(`rejected ${uuid}`, await call('peer.reject', { uuid })) })

  peer.command('list')
    .description('admitted peers and their connections')
    .action(async () => {
      const rows = await call('peer.list')
      ctx.out.print(table(rows, ['uuid', 'domain', 'address', 'state', 'accounts', 'connection', 'unreachableSince', 'outbox', 'lastSeen']), rows)
    })

  peer.command('ban <uuid>')
    .description('excommunicate a peer: refuse it here and tell every peer (each applies it by its own policy)')
    .requiredOption('--reason <text>', 'why; every peer\'s sysadmin sees it')
    .action(async (uuid: string, o: { reason: string }) => {
      const r = await call('peer.ban', { uuid, reason: o.reason })
      ctx.out.print(`banned ${uuid}; notice sent to ${String(r.notified)} peer(s)`, r)
    })

  peer.command('bans')
    .description('peers banned here, and excommunication notices waiting for a decision')
    .action(async () => {
      const rows = await call('peer.bans')
      ctx.out.print(table(rows, ['uuid', 'state', 'bannedBy', 'sponsor', 'reason']), rows)
    })

  peer.command('ping <uuid>')
    .description('a round trip through the full signed and encrypted path')
    .action(async (uuid: string) => {
      const r = await call('peer.ping', { uuid })
      ctx.out.print(`pong from ${uuid} in ${Number(r.ms).toFixed(2)} ms`, r)
    })
}

export function registerStatusCommand (program: Command, ctx: CliContext): void {
  program.command('status')
    .description('this peer: connections, queue depths, services, counters')
    .action(async () => {
      const s = await callAdmin(ctx.config().admin.socket, 'status')
      const human = [
        `peer ${String(s.uuid)} (${String(s.domain)}) at ${String(s.address)}, up ${String(s.uptimeSeconds)} s, database ${String(s.database)}`,
        ...(s.accounts === null ? [] : [backfillLine(s.accounts.backfill)]),
        '', 'PEERS', table(s.peers, ['uuid', 'domain', 'accounts', 'connection', 'outbox', 'outboxOldest', 'lastError']),
        '', `SERVICES (${String(s.serviceConnections)} connected)`, table(s.services, ['name', 'state', 'receive', 'send', 'delivered']),
        '', `events in ${String(s.stats.eventsIn)}, out ${String(s.stats.eventsOut)}; refusals ${JSON.stringify(s.stats.refusals)}`
      ].join('\n')
      ctx.out.print(human, s)
    })
}

/** Until the peer we asked lists us as admitted: it is active in our peer list once its add-peer-server arrived. */
async function waitForApproval (call: (method: string) => Promise<any>, uuid: string): Promise<void> {
  for (;;) {
    const rows: Array<{ uuid: string, state: string }> = await call('peer.list')
    if (rows.some((p) => p.uuid === uuid && p.state === 'active')) return
    await new Promise((resolve) => setTimeout(resolve, 1000))
  }
}
