import type { Db } from '../db/index.js'
import { BadRequestError, NotFoundError, SchemaError } from '../errors.js'
import type { Logger } from '../logger.js'
import { checkBundle, type BundleJson } from '../crypto/bundle.js'
import type { Identity } from '../identity/files.js'
import { readPublicKey } from '../identity/openpgp.js'
import type { Dispatcher } from '../dispatcher/index.js'
import { PEERS_SERVICE, type ServiceRegistry } from '../services/registry.js'
import { ADDRESS, isUuid } from '../wire/frame.js'
import type { Envelope } from '../wire/envelope.js'
import type { PeerDirectory, PeerInfo } from './directory.js'
import type { JoinService } from './join.js'
import { PeerRecords } from './record.js'
import { InboxConsumer } from '../services/consumer.js'
import { KAD_EVENTS, PeerLookup } from './kademlia.js'

/** The built-in `peers` service: a subscriber like any other, on the same durable inbox. */
export { PEERS_SERVICE }
export const PEER_EVENTS = ['peer-table', 'peer-introduction', 'excommunication', 'peer-record', 'key-rotation', ...KAD_EVENTS] as const

export interface PeerNetworkInit {
  /** greet a newcomer another peer introduced, or queue it for the sysadmin */
  greeting: 'auto' | 'manual'
  /** apply another peer's excommunication notice, or queue it for the sysadmin */
  excommunication: 'auto' | 'manual'
}

export interface PeerNetworkComponents {
  db: Db
  identity: Identity
  peers: PeerDirectory
  dispatcher: Dispatcher
  registry: ServiceRegistry
  join: JoinService
  logger: Logger
  /** a peer was banned here: drop its link */
  onBanned: (uuid: string) => void
  /** key-rotation events (src/peers/key-rotation.ts) */
  keyRotation?: { onEvent: (from: string, data: unknown) => Promise<void> }
  /** where other peers reach us now (the configured or bound address); without it no peer record is made */
  advertise?: () => string
}

/** What one peer tells another about a third. */
export interface PeerCard { uuid: string, domain: string, address: string, gpg_pub_key: string, dh_pub_key: BundleJson }

const GREET_EVERY_MS = 2000
const GREET_MAX_BACKOFF_MS = 5_000
/** about two minutes of tries: a newcomer that refuses that long is not coming */
const GREET_MAX_ATTEMPTS = 30

/**
 * RFC 3 "Adding New Peers": the sponsor hands the newcomer its peer table and
 * introduces the newcomer to its peers, who greet it (auto) or ask their
 * sysadmin (manual). And "Joining The Network": excommunication notices.
 */
export class PeerNetwork {
  private readonly consumer: InboxConsumer
  private timer: NodeJS.Timeout | null = null
  /** the greetDue pass under way, and whether another was asked for meanwhile */
  private greeting: Promise<void> | null = null
  private greetAgain = false
  readonly records: PeerRecords
  /** Kademlia FIND_NODE over the dispatcher, among admitted peers */
  readonly lookup: PeerLookup

  constructor (private readonly init: PeerNetworkInit, private readonly c: PeerNetworkComponents) {
    this.records = new PeerRecords({ db: c.db, identity: c.identity, peers: c.peers, logger: c.logger })
    this.lookup = new PeerLookup({}, { identity: c.identity, peers: c.peers, dispatcher: c.dispatcher, logger: c.logger })
    this.consumer = new InboxConsumer({ service: PEERS_SERVICE, events: PEER_EVENTS, what: 'peer' }, { ...c, handle: async (env) => { await this.handle(env) } })
  }

  async start (): Promise<void> {
    if (this.consumer.running) return
    await this.consumer.start()
    this.c.peers.on('admitted', this.onAdmitted)
    this.timer = setInterval(() => { this.greetDue().catch((err) => { this.c.logger.warn({ err }, 'greeting failed') }) }, GREET_EVERY_MS)
    this.timer.unref()
    this.consumer.drain()
    await this.lookup.start()
    await this.announceRecord()
  }

  async stop (): Promise<void> {
    await this.lookup.stop()
    this.c.peers.off('admitted', this.onAdmitted)
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    await this.consumer.stop()
  }

  // ---- sponsor side ------------------------------------------------------------

  /** After our approval reached the newcomer: our table to it, it to our other peers. */
  async introduce (newcomer: PeerInfo): Promise<void> {
    const others = this.c.peers.activeList().filter((p) => p.uuid !== newcomer.uuid)
    const events = [{ name: 'peer-table', to: newcomer.uuid, data: { peers: others.map(card) } }]
    for (const p of others) events.push({ name: 'peer-introduction', to: p.uuid, data: { peer: card(newcomer) } as any })
    await this.c.dispatcher.submit(PEERS_SERVICE, events)
    this.c.logger.info({ peer: newcomer.uuid, introducedTo: others.length }, 'newcomer introduced')
  }

  /**
   * Our table grew after we had introduced a newcomer we sponsored (a peer
   * greeted us late): introduce our newcomers to the new peer too, and tell
   * them about it, so they accept its greeting. Without this a peer admitted
   * just after an approval would never meet that newcomer.
   */
  private readonly onAdmitted = (p: PeerInfo): void => {
    this.introduceSponsoredTo(p).catch((err) => { this.c.logger.warn({ err, peer: p.uuid }, 'late introduction failed') })
  }

  private async introduceSponsoredTo (p: PeerInfo): Promise<void> {
    const rows = await this.c.db.selectFrom('join_requests').select('uuid').where('state', '=', 'approved').where('introduced_by', 'is', null).execute()
    // a newcomer we just approved is introduced by introduce(), with its own peer table
    if (rows.some((r) => r.uuid === p.uuid)) return
    const ours = rows.map((r) => this.c.peers.active(r.uuid)).filter((x): x is PeerInfo => x !== undefined)
    if (ours.length === 0) return
    const events = []
    for (const n of ours) {
      events.push({ name: 'peer-table', to: n.uuid, data: { peers: [card(p)] } as any })
      events.push({ name: 'peer-introduction', to: p.uuid, data: { peer: card(n) } as any })
    }
    await this.c.dispatcher.submit(PEERS_SERVICE, events)
  }

  // ---- signed peer records ------------------------------------------------------

  /**
   * If we advertise another address than the one we last announced, sign a
   * new record and send it to every peer. It goes through the outbox, so a
   * peer that cannot be reached now gets it later, and each peer forwards it
   * to its own peers (the ones that cannot reach us learn it from them).
   */
  async announceRecord (): Promise<void> {
    if (this.c.advertise === undefined) return
    const rec = await this.records.ownIfChanged(this.c.advertise())
    if (rec === null || this.c.peers.activeList().length === 0) return
    await this.c.dispatcher.submit(PEERS_SERVICE, [{ name: 'peer-record', to: '*', data: { record: rec } }])
    this.c.logger.info({ address: rec.address, seq: rec.seq, to: this.c.peers.activeList().length }, 'peer record announced')
  }

  private async onPeerRecord (from: string, data: Record<string, unknown>): Promise<void> {
    const { outcome, record } = await this.records.accept(data?.record)
    if (outcome !== 'applied') { this.c.logger.debug({ peer: record.uuid, seq: record.seq, via: from, outcome }, 'peer record not newer; not forwarded'); return }
    this.c.logger.info({ peer: record.uuid, address: record.address, seq: record.seq, via: from, direct: from === record.uuid }, 'peer record applied')
    // flood once: every peer forwards a record the first time it takes it, so
    // it reaches the whole network even if its author can dial only some of it
    await this.c.dispatcher.submit(PEERS_SERVICE, [{ name: 'peer-record', to: '*', data: { record } }])
  }

  // ---- peer events ----------------------------------------------------------------

  private async handle (env: Envelope): Promise<void> {
    const from = env.meta.from
    if (from === this.c.identity.uuid) return
    if (this.c.peers.active(from) === undefined) throw new NotFoundError(`${env.name} from ${from}, which is not an active peer`)
    const data = env.data as Record<string, unknown>
    if (env.name === 'peer-table') await this.onPeerTable(from, data)
    else if (env.name === 'peer-introduction') await this.onIntroduction(from, data)
    else if (env.name === 'excommunication') await this.onExcommunication(from, data)
    else if (env.name === 'key-rotation') await this.c.keyRotation?.onEvent(from, data)
    else if (env.name === 'peer-record') await this.onPeerRecord(from, data)
    else if (env.name === 'kad-find-node' || env.name === 'kad-nodes') await this.lookup.onEvent(from, env.name, data)
  }

  /** Our sponsor's peers: they will greet us; we accept greetings only from these. */
  private async onPeerTable (from: string, data: Record<string, unknown>): Promise<void> {
    if (!Array.isArray(data?.peers) || data.peers.length > 100_000) throw new SchemaError('peer-table data.peers must be an array')
    let added = 0
    for (const raw of data.peers) {
      const c = await checkCard(raw)
      if (c.uuid === this.c.identity.uuid || this.c.peers.get(c.uuid) !== undefined) continue
      await this.saveCandidate(c, from, 'heard')
      added++
    }
    this.c.logger.info({ peer: from, added }, 'peer table received')
  }

  private async onIntroduction (from: string, data: Record<string, unknown>): Promise<void> {
    const c = await checkCard(data?.peer)
    if (c.uuid === this.c.identity.uuid || this.c.peers.get(c.uuid) !== undefined) return
    if (await this.c.peers.isBanned(c.uuid)) { this.c.logger.warn({ peer: c.uuid, introducedBy: from }, 'introduction of a banned peer ignored'); return }
    if (this.init.greeting === 'auto') {
      await this.saveCandidate(c, from, 'greeting')
      await this.greetDue()
      return
    }
    const key = await readPublicKey(c.gpg_pub_key)
    await this.c.db.insertInto('join_requests').values({
      uuid: c.uuid, domain: c.domain, address: c.address, admin: '-', public_key: c.gpg_pub_key, fingerprint: key.getFingerprint(),
      signal_bundle: JSON.stringify(c.dh_pub_key), proofs: [], proofs_needed: 0, introduced_by: from
    }).onConflict((oc) => oc.column('uuid').doNothing()).execute()
    this.c.logger.info({ peer: c.uuid, domain: c.domain, introducedBy: from }, 'introduction queued for the sysadmin (greeting = manual)')
  }

  private async saveCandidate (c: PeerCard, from: string, state: 'heard' | 'greeting'): Promise<void> {
    const key = await readPublicKey(c.gpg_pub_key)
    const row = { domain: c.domain, address: c.address, public_key: c.gpg_pub_key, fingerprint: key.getFingerprint(), signal_bundle: JSON.stringify(c.dh_pub_key), introduced_by: from, state }
    // a peer table arriving later must not stop a greeting under way
    const { state: _s, ...rest } = row
    await this.c.db.insertInto('peer_candidates').values({ uuid: c.uuid, ...row })
      .onConflict((oc) => oc.column('uuid').doUpdateSet(state === 'greeting' ? row : rest)).execute()
  }

  /**
   * Send add-peer-server to every introduced newcomer whose turn it is; back
   * off on failure. One pass at a time (the timer and each introduction call
   * this): two passes greeting one candidate at once could interleave a
   * refused greeting's clean-up with the other's success and forget a peer
   * that had just accepted us, for good. A call during a pass gets one more
   * pass after it.
   */
  async greetDue (): Promise<void> {
    if (this.greeting !== null) {
      this.greetAgain = true
      await this.greeting
      return
    }
    this.greeting = (async () => {
      do {
        this.greetAgain = false
        await this.greetPass()
      } while (this.greetAgain)
    })().finally(() => { this.greeting = null })
    await this.greeting
  }

  private async greetPass (): Promise<void> {
    const due = await this.c.db.selectFrom('peer_candidates').selectAll().where('state', '=', 'greeting').where('next_try', '<=', new Date()).execute()
    for (const cand of due) {
      if (cand.attempts >= GREET_MAX_ATTEMPTS) {
        await this.c.db.updateTable('peer_candidates').set({ state: 'heard' }).where('uuid', '=', cand.uuid).execute()
        this.c.logger.warn({ peer: cand.uuid, attempts: cand.attempts }, 'gave up greeting an introduced peer; `centerctl peer requests` will not show it, it can still greet us')
        continue
      }
      try {
        await this.c.join.greet({ uuid: cand.uuid, domain: cand.domain, address: cand.address, publicArmored: cand.public_key, bundle: checkBundle(cand.signal_bundle), sponsor: cand.introduced_by })
        await this.c.db.updateTable('peer_candidates').set({ state: 'greeted' }).where('uuid', '=', cand.uuid).execute()
        this.c.logger.info({ peer: cand.uuid, introducedBy: cand.introduced_by }, 'greeted an introduced peer')
      } catch (err) {
        const wait = Math.min(GREET_MAX_BACKOFF_MS, 1000 * 2 ** Math.min(cand.attempts, 6))
        await this.c.db.updateTable('peer_candidates').set({ attempts: cand.attempts + 1, next_try: new Date(Date.now() + wait) }).where('uuid', '=', cand.uuid).execute()
        this.c.logger.debug({ peer: cand.uuid, err: (err as Error).message, retryInMs: wait }, 'greeting not taken yet')
      }
    }
  }

  // ---- excommunication -----------------------------------------------------------

  /** Ban a peer here, and tell every peer (each applies it by its own policy). */
  async ban (uuid: string, reason: string): Promise<{ uuid: string, notified: number }> {
    if (!isUuid(uuid)) throw new BadRequestError('uuid must be a lowercase UUID')
    if (uuid === this.c.identity.uuid) throw new BadRequestError('a peer cannot ban itself')
    if (reason.trim() === '' || reason.length > 1000) throw new BadRequestError('--reason must be 1 to 1000 characters')
    const sponsor = this.c.peers.get(uuid)?.sponsor ?? null
    await this.apply(uuid, reason, this.c.identity.uuid, sponsor)
    const notified = this.c.peers.activeList().length
    await this.c.dispatcher.submit(PEERS_SERVICE, [{ name: 'excommunication', to: '*', data: { uuid, reason, sponsor } }])
    return { uuid, notified }
  }

  private async onExcommunication (from: string, data: Record<string, unknown>): Promise<void> {
    const uuid = data?.uuid
    const reason = typeof data?.reason === 'string' ? data.reason.slice(0, 1000) : ''
    if (!isUuid(uuid)) throw new SchemaError('excommunication data.uuid must be a UUID')
    const sponsor = isUuid(data?.sponsor) ? data.sponsor : null
    if (uuid === this.c.identity.uuid) { this.c.logger.warn({ by: from, reason }, 'another peer excommunicated this peer'); return }
    if (await this.c.peers.isBanned(uuid)) return
    if (this.init.excommunication === 'auto') {
      await this.apply(uuid, reason, from, sponsor)
      this.c.logger.warn({ peer: uuid, by: from, reason, sponsor }, 'excommunication applied')
      return
    }
    await this.c.db.insertInto('bans').values({ uuid, reason, banned_by: from, sponsor, state: 'proposed' }).onConflict((oc) => oc.column('uuid').doNothing()).execute()
    this.c.logger.warn({ peer: uuid, by: from, reason, sponsor }, 'excommunication notice queued for the sysadmin (excommunication = manual)')
  }

  private async apply (uuid: string, reason: string, by: string, sponsor: string | null): Promise<void> {
    await this.c.db.insertInto('bans').values({ uuid, reason, banned_by: by, sponsor, state: 'applied' })
      .onConflict((oc) => oc.column('uuid').doUpdateSet({ state: 'applied', reason, banned_by: by })).execute()
    await this.c.peers.setState(uuid, 'banned')
    await this.c.db.deleteFrom('peer_candidates').where('uuid', '=', uuid).execute()
    await this.c.db.updateTable('join_requests').set({ state: 'rejected', updated_at: new Date() }).where('uuid', '=', uuid).where('state', '=', 'pending').execute()
    this.lookup.forget(uuid)
    this.c.onBanned(uuid)
  }


  async bans (): Promise<Array<Record<string, unknown>>> {
    const rows = await this.c.db.selectFrom('bans').selectAll().orderBy('created_at').execute()
    return rows.map((r) => ({ uuid: r.uuid, reason: r.reason, bannedBy: r.banned_by, sponsor: r.sponsor, state: r.state, createdAt: r.created_at }))
  }
}

function card (p: PeerInfo): PeerCard {
  return { uuid: p.uuid, domain: p.domain, address: p.address, gpg_pub_key: p.publicArmored, dh_pub_key: p.bundle }
}


async function checkCard (v: unknown): Promise<PeerCard> {
  const c = v as Record<string, unknown> | null
  if (typeof c !== 'object' || c === null) throw new SchemaError('a peer card must be an object')
  if (!isUuid(c.uuid)) throw new SchemaError('peer card uuid must be a UUID')
  if (typeof c.domain !== 'string' || !/^[A-Za-z0-9.-]{1,253}$/.test(c.domain)) throw new SchemaError('peer card domain must be a domain name')
  if (typeof c.address !== 'string' || !ADDRESS.test(c.address)) throw new SchemaError('peer card address must be HOST:PORT')
  if (typeof c.gpg_pub_key !== 'string') throw new SchemaError('peer card gpg_pub_key must be an armored key')
  await readPublicKey(c.gpg_pub_key)
  return { uuid: c.uuid, domain: c.domain, address: c.address, gpg_pub_key: c.gpg_pub_key, dh_pub_key: checkBundle(c.dh_pub_key) }
}
