import { randomBytes } from 'node:crypto'
import WebSocket from 'ws'
import { sql } from 'kysely'
import type { Config } from '../config/index.js'
import type { Db } from '../db/index.js'
import { BannedPeerError, DecryptError, FromTheFutureError, FrameTooLargeError, ReplayError, SequenceGapError, UnknownPeerError, NoSessionError, NotRunningError, RateLimitedError, SchemaError, WrongRecipientError, WrongSenderError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { PeerSession, Ratchet } from '../crypto/ratchet.js'
import { bundleOf } from '../crypto/bundle.js'
import type { Identity } from '../identity/files.js'
import { encryptAndSign, signDetached, type PrivateKey } from '../identity/openpgp.js'
import { verifyPeerSignature } from '../peers/key-rotation.js'
import { Inbox, type InboxRow } from '../dispatcher/inbox.js'
import type { Refusals, Stats } from '../dispatcher/stats.js'
import type { PeerDirectory, PeerInfo } from '../peers/directory.js'
import { checkEnvelope, nowSeconds } from '../wire/envelope.js'
import { decodeFrame, encodeGpg, encodeGpgPlus, gpgPlusSigned, parseJson, type Frame } from '../wire/frame.js'
import { TokenBucket } from './token-bucket.js'
import { PeerClock } from './clock.js'
import { checkPayload, type Payload } from './payload.js'

export type LinkRole = 'dialer' | 'acceptor'
export type LinkState = 'disconnected' | 'connecting' | 'open'

export interface LinkInit {
  role: LinkRole
  limits: Config['limits']
  delivery: Config['delivery']
}

export interface LinkComponents {
  db: Db
  inbox: Inbox
  ratchet: Ratchet
  identity: Identity
  peers: PeerDirectory
  logger: Logger
  stats: Stats
  refusals: Refusals
  /** GPG frames (session-reset) arriving on the link go to the control handler */
  onControl: (link: Link, frame: Extract<Frame, { kind: 'gpg' }>) => Promise<void>
  /** the key to sign frames to a peer with (the previous one until the peer confirms a key rotation) */
  signingKey?: (peer: string) => PrivateKey
}

const REKEY_INTERVAL_MS = 5000
const DECRYPT_FAILURES_BEFORE_REKEY = 3
const KEEPALIVE_MS = 15_000
const LINGER_MS = 8
/** how long a record advanced only by an event-less frame may wait to be saved */
const SAVE_SOON_MS = 50
const LINGER_MIN_EVENTS = 128
/**
 * The peer with the higher UUID dials too when its link has stayed down this
 * long: the other side may not know where we are any more (we moved, and our
 * new peer record cannot reach it until some connection is up).
 */
export const ACCEPTOR_DIAL_AFTER_MS = 3000

/**
 * One peer: its WebSocket, the sending pipeline over the durable outbox, and
 * the receiving pipeline into the inbox. Frames are handled strictly one at a
 * time in each direction.
 *
 * The peer with the lower UUID is the `dialer`: it starts the ratchet session
 * and dials at once. The `acceptor` dials only when the link has stayed down
 * for ACCEPTOR_DIAL_AFTER_MS (and it has a session to speak with). When both
 * connections come up, the one the lower UUID opened (the canonical one) is
 * kept on both sides: see `attach`.
 */
export class Link {
  readonly uuid: string
  state: LinkState = 'disconnected'
  connectedSince: Date | null = null
  /** when the last connection ended (or the first dial failed); null while connected */
  unreachableSince: Date | null = null
  lastError: string | null = null
  /** the peer's clock offset, from its frames' iat (doctor's clock check) */
  readonly clock = new PeerClock()
  private ws: WebSocket | null = null
  /** `ws` was opened by the peer with the lower UUID */
  private wsCanonical = false
  /** our dial under way, if any (a new address cancels it) */
  private dialing: WebSocket | null = null
  private helloSentOn: WebSocket | null = null
  private helloReceived = false
  private lastSent = 0
  private lastAcked = 0
  private lastIn = 0
  private inflight: Array<{ upTo: number, at: number }> = []
  private ackDue = false
  private ackTimer: NodeJS.Timeout | null = null
  private pumping = false
  private pumpAgain = false
  private recv: Promise<void> = Promise.resolve()
  private decryptFailures = 0
  /** next_out when this process started the link: sequence numbers from here on are this run's */
  private runFloor = 1
  /** highest sequence number sent to the peer in this run */
  private maxSent = 0
  /** a frame has decrypted on the current connection */
  private decryptedHere = false
  private lastRekey = 0
  private reconnectTimer: NodeJS.Timeout | null = null
  private attempt = 0
  private stopped = true
  private deleteRunning = false
  /** acked rows below this are gone from the outbox (0: not known, this run has deleted nothing yet) */
  private deletedUpTo = 0
  private deleteTarget = 0
  private readonly pings = new Map<string, (ms: number) => void>()
  private readonly bucket: TokenBucket
  private readonly log: Logger
  private ticker: NodeJS.Timeout | null = null
  private lingerTimer: NodeJS.Timeout | null = null
  private lingered = false
  /**
   * The highest outbox seq known to be queued for this peer (Infinity: not
   * known, read to find out). Reads that come back short prove nothing lies
   * beyond; `queued` moves it up after each commit. An ack-only frame, and
   * the read after every sent frame, then skip the database.
   */
  private queuedTop = Infinity
  private queuedVersion = 0
  /** the in-memory ratchet record is ahead of the database's (see `accept`) */
  private sessionDirty = false
  private saveTimer: NodeJS.Timeout | null = null
  private alive = true

  constructor (private readonly init: LinkInit, private readonly c: LinkComponents, peer: PeerInfo) {
    this.uuid = peer.uuid
    this.bucket = new TokenBucket(init.limits.rateFramesPerSecond, init.limits.rateBurstFrames)
    this.log = c.logger.child({ peer: peer.uuid })
  }

  get role (): LinkRole { return this.init.role }
  get peer (): PeerInfo | undefined { return this.c.peers.get(this.uuid) }
  get pendingAcks (): number { return this.inflight.length }

  async start (): Promise<void> {
    if (!this.stopped) return
    this.stopped = false
    const row = await this.c.db.selectFrom('peer_seq').select(['last_in', 'next_out']).where('peer_uuid', '=', this.uuid).executeTakeFirst()
    this.lastIn = Number(row?.last_in ?? 0)
    this.runFloor = Number(row?.next_out ?? 1)
    this.ticker = setInterval(() => { this.tick() }, Math.min(KEEPALIVE_MS, this.init.delivery.ackTimeoutMs / 2))
    this.ticker.unref()
    if (this.role === 'dialer') this.dial()
    else this.scheduleReconnect()
  }

  stop (): void {
    if (this.stopped) return
    this.stopped = true
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer)
    if (this.ackTimer !== null) clearTimeout(this.ackTimer)
    if (this.ticker !== null) clearInterval(this.ticker)
    if (this.lingerTimer !== null) clearTimeout(this.lingerTimer)
    if (this.saveTimer !== null) clearTimeout(this.saveTimer)
    this.reconnectTimer = this.ackTimer = this.ticker = this.lingerTimer = this.saveTimer = null
    // best effort: the database may already be closing; a lost save is harmless (see `accept`)
    if (this.sessionDirty) this.flushSession().catch(() => {})
    this.ws?.close(1001, 'shutting down')
    this.detach()
  }

  /** Work may be waiting in the outbox. */
  wake (): void {
    if (this.state === 'open') this.pump().catch((err) => { this.log.error({ err }, 'send pipeline failed') })
  }

  /** The outbox committed events for this peer, up to `seq`. */
  queued (seq: number): void {
    this.queuedVersion++
    if (seq > this.queuedTop) this.queuedTop = seq
    this.wake()
  }

  // ---- connection ---------------------------------------------------------

  private dial (): void {
    const peer = this.peer
    if (this.stopped || peer === undefined || peer.state !== 'active' || this.ws !== null || this.dialing !== null) return
    if (this.role === 'dialer') { this.connect(peer.address); return }
    // the acceptor cannot start a ratchet session: without one, a connection
    // of ours could not carry a single frame
    this.c.ratchet.withPeer(this.uuid, async (s) => s.established).then((ok) => {
      if (ok && this.ws === null && this.dialing === null) this.connect(this.peer?.address ?? peer.address)
      else if (!ok) this.scheduleReconnect()
    }, () => { this.scheduleReconnect() })
  }

  private connect (address: string): void {
    if (this.stopped) return
    this.state = 'connecting'
    const ws = new WebSocket(`ws://${address}/center/v1`, { maxPayload: this.init.limits.maxFrameBytes, handshakeTimeout: 5000, perMessageDeflate: false })
    this.dialing = ws
    ws.binaryType = 'nodebuffer'
    ws.once('open', () => {
      if (this.dialing === ws) this.dialing = null
      this.attach(ws, true)
    })
    ws.once('close', () => {
      if (this.dialing === ws) this.dialing = null
      if (this.ws !== ws) this.scheduleReconnect()
    })
    ws.on('error', (err) => {
      this.lastError = err.message
      if (this.ws === null) this.unreachableSince ??= new Date()
      this.log.debug({ err: err.message, address }, 'dial failed')
    })
  }

  private scheduleReconnect (): void {
    if (this.stopped || this.reconnectTimer !== null || this.ws !== null || this.dialing !== null) return
    this.state = 'disconnected'
    const { retryMinMs, retryMaxMs } = this.init.delivery
    const base = Math.min(retryMaxMs, retryMinMs * 2 ** Math.min(this.attempt, 20))
    let delay = base / 2 + Math.random() * base / 2
    // the dialer goes first; jitter keeps two acceptors' retries apart
    if (this.role === 'acceptor') delay = Math.max(delay, ACCEPTOR_DIAL_AFTER_MS * (0.75 + Math.random() / 2))
    this.attempt++
    this.reconnectTimer = setTimeout(() => { this.reconnectTimer = null; this.dial() }, delay)
  }

  /**
   * The peer's address changed (a verified peer record): if the link is
   * down, drop the dial under way to the old address and dial the new one
   * now, whatever our role (the peer may be waiting for anyone to reach it).
   */
  redial (): void {
    if (this.stopped || this.ws !== null) return
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer)
    this.reconnectTimer = null
    this.attempt = 0
    const old = this.dialing
    this.dialing = null
    old?.terminate()
    this.dial()
  }

  /**
   * Make `ws` this link's connection. `openedByUs`: we dialed it. Of two
   * connections, the one the lower UUID opened (canonical) wins on both
   * sides whatever the order they come up in: a non-canonical connection
   * never replaces an open canonical one. Otherwise the newer replaces the
   * older (a peer that restarted). Returns false when `ws` was refused.
   */
  attach (ws: WebSocket, openedByUs = false): boolean {
    if (this.stopped) { ws.close(1001, 'shutting down'); return false }
    const canonical = openedByUs === (this.role === 'dialer')
    const old = this.ws
    if (old !== null && old !== ws && this.wsCanonical && !canonical && old.readyState === WebSocket.OPEN) {
      this.log.debug({ openedByUs }, 'second connection refused: the one the lower UUID dialed stays')
      ws.close(4009, 'duplicate connection')
      return false
    }
    this.ws = ws
    this.wsCanonical = canonical
    if (old !== null && old !== ws) old.close(4000, 'replaced by a newer connection')
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer)
    this.reconnectTimer = null
    this.state = 'open'
    this.connectedSince = new Date()
    this.unreachableSince = null
    this.alive = true
    this.helloReceived = false
    this.helloSentOn = null
    this.decryptedHere = false
    ws.on('message', (data: Buffer) => { this.enqueue(data) })
    ws.on('pong', () => { this.alive = true })
    ws.on('close', () => {
      if (this.ws !== ws) return
      this.detach()
      this.scheduleReconnect()
    })
    ws.on('error', (err) => { this.onSocketError(err) })
    // the side that opened the connection speaks first (the other side's
    // LinkManager learns who it is from that first frame)
    if (openedByUs) this.sendHello()
    return true
  }

  private detach (): void {
    this.ws = null
    if (this.state === 'open' || this.unreachableSince === null) this.unreachableSince = new Date()
    this.state = 'disconnected'
    this.connectedSince = null
    this.helloReceived = false
    this.inflight = []
    for (const [, done] of this.pings) done(-1)
    this.pings.clear()
  }

  private onSocketError (err: Error & { code?: string }): void {
    this.lastError = err.message
    if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
      this.c.refusals.refuse(new FrameTooLargeError(`frame larger than ${this.init.limits.maxFrameBytes} bytes; connection closed`), { peer: this.uuid })
    }
  }

  private tick (): void {
    const ws = this.ws
    if (ws === null) return
    if (!this.alive) { ws.terminate(); return }
    this.alive = false
    ws.ping()
    const first = this.inflight[0]
    if (first !== undefined && Date.now() - first.at > this.init.delivery.ackTimeoutMs) {
      this.log.info({ unacked: this.lastSent - this.lastAcked }, 'no ack in time; resending from the last acknowledged event')
      this.rewind()
    }
  }

  /**
   * The peer has everything up to `n` and wants the rest. A peer restored from
   * an old backup reports less than it once acknowledged: start from there
   * (the events in between were acked and are gone; its restore lost them).
   */
  private resetTo (n: number): void {
    if (n < this.lastAcked) {
      this.log.warn({ had: this.lastAcked, now: n }, 'peer reports fewer events than it acknowledged (restored from an old backup?)')
      this.lastAcked = n
    }
    this.onAck(n)
    this.lastSent = this.lastAcked
    this.inflight = []
  }

  /**
   * We were restored from an old backup if the peer has seen a sequence
   * number we never sent: above everything handed out before this run and
   * everything sent in it. Then the numbers this run handed out collide with
   * ones the peer has: move them (and the counter) past what it has, or the
   * hello's ack would delete them unsent.
   */
  private async catchUpSequence (ack: number): Promise<void> {
    if (ack <= Math.max(this.runFloor - 1, this.maxSent)) return
    const shift = ack + 1 - this.runFloor
    await this.c.db.transaction().execute(async (tx) => {
      const row = await tx.selectFrom('peer_seq').select('next_out').where('peer_uuid', '=', this.uuid).forUpdate().executeTakeFirst()
      const next = Number(row?.next_out ?? 1)
      // two steps: the primary key is checked row by row
      await tx.updateTable('outbox').set({ seq: sql`-(seq + ${shift})` as any }).where('peer_uuid', '=', this.uuid).where('seq', '>=', this.runFloor).execute()
      await tx.updateTable('outbox').set({ seq: sql`-seq` as any }).where('peer_uuid', '=', this.uuid).where('seq', '<', 0).execute()
      await tx.updateTable('peer_seq').set({ next_out: next + shift }).where('peer_uuid', '=', this.uuid).execute()
      this.log.warn({ peerHas: ack, ourNext: next, moved: shift }, 'the peer has seen sequence numbers we never sent (restored from an old backup?); renumbered ours past them')
    })
    this.runFloor += shift
  }

  private rewind (): void {
    this.lastSent = this.lastAcked
    this.inflight = []
    this.wake()
  }

  // ---- sending ------------------------------------------------------------

  private sendHello (): void {
    const ws = this.ws
    if (ws === null) return
    this.helloSentOn = ws
    this.sendPayload(`{"hello":{"ack":${this.lastIn}}}`).catch((err) => {
      if (this.helloSentOn === ws) this.helloSentOn = null
      this.lastError = (err as Error).message
      this.log.debug({ err: (err as Error).message }, 'hello not sent')
      // a connection we opened that cannot carry our hello would sit idle
      if (err instanceof NoSessionError && this.ws === ws && !this.wsCanonical) ws.close(4010, 'no session')
    })
  }

  /** Encrypt, save the ratchet record, sign and send, in that order, under the session lock. */
  private async sendPayload (payload: string): Promise<void> {
    const ws = this.ws
    const peer = this.peer
    if (ws === null || peer === undefined) throw new NotRunningError('link is not connected')
    await this.c.ratchet.withPeer(this.uuid, async (s) => {
      if (!s.established) {
        if (this.role !== 'dialer') throw new NoSessionError(`waiting for ${this.uuid} to start the ratchet session`)
        await s.initiate(peer.bundle)
      }
      const ct = await s.encrypt(Buffer.from(payload))
      await s.save(this.c.db)
      this.sessionDirty = false
      const header = { v: 1 as const, from: this.c.identity.uuid, to: this.uuid, type: ct.type, iat: nowSeconds() }
      const signed = gpgPlusSigned(header, ct.body)
      const sig = await signDetached(signed, this.c.signingKey?.(this.uuid) ?? this.c.identity.privateKey)
      if (ws.readyState !== WebSocket.OPEN) throw new NotRunningError('connection closed while sending')
      ws.send(encodeGpgPlus(signed, sig))
      this.c.stats.framesOut++
    })
  }

  /** Test and tooling hook: send an arbitrary payload through the real signed, encrypted path. */
  async sendRawPayload (payload: string): Promise<void> {
    await this.sendPayload(payload)
  }

  private async pump (): Promise<void> {
    if (this.pumping) { this.pumpAgain = true; return }
    this.pumping = true
    try {
      do {
        this.pumpAgain = false
        while (await this.sendOne()) { /* keep the window full */ }
      } while (this.pumpAgain)
    } finally {
      this.pumping = false
    }
  }

  /** Send one frame (events and/or an ack). Returns false when there is nothing to send. */
  private async sendOne (): Promise<boolean> {
    if (this.ws === null || !this.helloReceived) return false
    const canSend = this.inflight.length < this.init.delivery.windowFrames
    // The frame's base must be the position the rows were read from. A hello
    // or a rewind that moves lastSent while the read is under way would
    // otherwise make a frame whose base claims rows it does not carry, and
    // the peer would take it and acknowledge past the hole.
    const from = this.lastSent
    const ws = this.ws
    const rows = canSend ? await this.nextRows(from) : []
    if (this.lastSent !== from || this.ws !== ws) return true
    if (rows.length === 0 && !this.ackDue) return false
    if (this.shouldLinger(rows.length)) return false
    const now = nowSeconds()
    const parts: string[] = []
    const expired: number[] = []
    let bytes = 0
    let upTo = from
    for (const r of rows) {
      if (bytes > 0 && bytes + r.envelope.length > this.init.limits.maxFrameBytes / 2) break
      upTo = r.seq
      if (r.exp <= now) { expired.push(r.seq); continue }
      parts.push(`{"seq":${r.seq},"env":${r.envelope}}`)
      bytes += r.envelope.length + 24
    }
    const ack = this.ackDue ? `,"ack":${this.lastIn}` : ''
    this.ackDue = false
    const range = rows.length > 0 ? `"base":${from},"upTo":${upTo},` : ''
    await this.sendPayload(`{${range}"events":[${parts.join(',')}]${ack}}`)
    // reset while sending (the peer asked for a resend): the reset stands
    if (this.lastSent !== from) return true
    if (parts.length > 0) this.inflight.push({ upTo, at: Date.now() })
    this.lastSent = upTo
    if (upTo > this.maxSent) this.maxSent = upTo
    if (expired.length > 0) await this.dropExpired(expired)
    return rows.length > 0
  }

  /**
   * Like Nagle: while a frame is unacknowledged, a small batch waits a few
   * ms for company. Every frame costs a signature, a ratchet step and a
   * database write on each side, so under load fewer, fuller frames are both
   * faster and kinder to latency; an idle link still sends at once.
   */
  private shouldLinger (rows: number): boolean {
    if (this.lingered) { this.lingered = false; return false }
    if (this.ackDue || this.inflight.length === 0 || rows >= LINGER_MIN_EVENTS) return false
    if (this.lingerTimer === null) this.lingerTimer = setTimeout(() => { this.lingerTimer = null; this.lingered = true; this.wake() }, LINGER_MS)
    return true
  }

  private async nextRows (after: number): Promise<Array<{ seq: number, envelope: string, exp: number }>> {
    if (after >= this.queuedTop) return []
    const version = this.queuedVersion
    const limit = this.init.delivery.batchMaxEvents
    const rows = await this.c.db.selectFrom('outbox').select(['seq', 'envelope', 'exp'])
      .where('peer_uuid', '=', this.uuid).where('seq', '>', after)
      .orderBy('seq').limit(limit).execute()
    // a commit during the read may hold rows the read did not see: then keep what it said
    if (rows.length < limit && version === this.queuedVersion) this.queuedTop = rows.length > 0 ? Number(rows[rows.length - 1]?.seq) : after
    return rows.map((r) => ({ seq: Number(r.seq), envelope: r.envelope, exp: Number(r.exp) }))
  }

  private async dropExpired (seqs: number[]): Promise<void> {
    this.c.stats.expiredInOutbox += seqs.length
    this.log.warn({ count: seqs.length, code: 'expired' }, 'events expired before the peer took them; dropped')
    await this.c.db.deleteFrom('outbox').where('peer_uuid', '=', this.uuid).where('seq', 'in', seqs).execute()
  }

  private onAck (n: number): void {
    if (!Number.isSafeInteger(n) || n <= this.lastAcked) return
    const before = this.lastAcked
    this.lastAcked = n
    if (this.lastSent < n) this.lastSent = n
    this.inflight = this.inflight.filter((f) => f.upTo > n)
    this.c.stats.eventsOut += n - before
    this.deleteAcked(n)
    this.wake()
  }

  /**
   * Drop acknowledged rows from the outbox, one delete at a time, and one for
   * all the acks that arrived while a delete ran. Each delete starts above
   * the last one: `seq <= n` alone walks every dead index entry the earlier
   * deletes left behind (until vacuum), which made deleting the hottest query.
   */
  private deleteAcked (n: number): void {
    if (n <= this.deleteTarget) return
    this.deleteTarget = n
    if (this.deleteRunning) return
    this.deleteRunning = true
    void (async () => {
      while (this.deletedUpTo < this.deleteTarget) {
        const from = this.deletedUpTo
        const to = this.deleteTarget
        let q = this.c.db.deleteFrom('outbox').where('peer_uuid', '=', this.uuid).where('seq', '<=', to)
        if (from > 0) q = q.where('seq', '>', from)
        await q.execute()
        this.deletedUpTo = to
      }
    })().catch((err) => { this.log.error({ err }, 'outbox cleanup failed') }).finally(() => { this.deleteRunning = false })
  }

  private scheduleAck (): void {
    this.ackDue = true
    if (this.ackTimer !== null) return
    // a short pause lets several frames share one ack
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null
      if (this.ackDue) this.wake()
    }, 2)
  }

  async ping (timeoutMs = 10_000): Promise<number> {
    if (this.ws === null || !this.helloReceived) throw new NotRunningError(`no open connection to ${this.uuid}`)
    const id = randomBytes(8).toString('hex')
    const t0 = process.hrtime.bigint()
    const done = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => { this.pings.delete(id); reject(new NotRunningError(`no pong from ${this.uuid} within ${timeoutMs} ms`)) }, timeoutMs)
      this.pings.set(id, (ms) => { clearTimeout(timer); ms < 0 ? reject(new NotRunningError('connection closed')) : resolve(ms) })
    })
    await this.sendPayload(JSON.stringify({ ping: id }))
    await done
    return Number(process.hrtime.bigint() - t0) / 1e6
  }

  // ---- receiving ----------------------------------------------------------

  /** Frames are handled strictly in arrival order. */
  enqueue (data: Buffer, preVerified: Frame | null = null): void {
    this.recv = this.recv.then(async () => { await this.handle(data, preVerified) })
      .catch((err) => { this.log.error({ err }, 'receive pipeline failed') })
  }

  private async handle (data: Buffer, pre: Frame | null): Promise<void> {
    let frame: Frame
    try {
      frame = pre ?? decodeFrame(data)
    } catch (err) {
      this.c.refusals.refuse(err, { peer: this.uuid })
      return
    }
    if (frame.kind === 'gpg') { await this.c.onControl(this, frame); return }
    if (frame.kind !== 'gpg+') {
      if (frame.kind !== 'ok') this.c.refusals.refuse(new SchemaError(`unexpected ${frame.kind} frame on an established link`), { peer: this.uuid })
      return
    }
    try {
      await this.receive(frame, pre !== null)
    } catch (err) {
      this.c.refusals.refuse(err, { peer: this.uuid })
      if (err instanceof SequenceGapError) this.askRewind()
      this.afterDecryptFailure(err)
    }
  }

  private lastRewindAsk = 0

  /** At most once a second: a burst of frames after a gap would otherwise each ask. */
  private askRewind (): void {
    if (Date.now() - this.lastRewindAsk < 1000) return
    this.lastRewindAsk = Date.now()
    this.sendPayload(`{"rewind":${this.lastIn}}`).catch(() => {})
  }

  private async receive (frame: Extract<Frame, { kind: 'gpg+' }>, verified: boolean): Promise<void> {
    const peer = this.peer
    if (peer === undefined) throw new UnknownPeerError(`peer ${this.uuid} is no longer admitted`)
    if (peer.state !== 'active') throw new BannedPeerError(`peer ${this.uuid} is banned here`)
    if (frame.header.from !== this.uuid) throw new WrongSenderError(`frame header.from ${frame.header.from} on the link of ${this.uuid}`)
    if (frame.header.to !== this.c.identity.uuid) throw new WrongRecipientError(`frame header.to ${frame.header.to} is not this peer`)
    const now = nowSeconds()
    if ((frame.header.iat ?? 0) > now + this.init.limits.clockSkewSeconds) throw new FromTheFutureError(`frame made ${(frame.header.iat ?? 0) - now} s in the future`)
    if (!this.bucket.take()) throw new RateLimitedError(`more than ${this.init.limits.rateFramesPerSecond} frames/s from ${this.uuid}`)
    // the signature is checked before anything is decrypted (RFC 3)
    if (!verified) await verifyPeerSignature(peer, frame.signed, frame.signature)
    this.clock.record(frame.header.iat)
    this.c.stats.framesIn++
    const payload = await this.c.ratchet.withPeer(this.uuid, async (s) => {
      const pt = await s.decrypt({ type: frame.header.type as 2 | 3, body: frame.ciphertext })
      this.decryptFailures = 0
      this.decryptedHere = true
      const p = checkPayload(parseJson(pt, 'frame payload'))
      if (p.base !== undefined && p.base > this.lastIn) {
        await s.save(this.c.db)
        throw new SequenceGapError(`frame starts after seq ${p.base}, but only ${this.lastIn} arrived; asking for a resend`)
      }
      await this.accept(p.events ?? [], p.upTo ?? 0, s)
      return p
    })
    void this.c.peers.touch(this.uuid).catch(() => {})
    if (payload.ack !== undefined) this.onAck(payload.ack)
    if (payload.hello !== undefined) await this.onHello(payload.hello.ack)
    if (payload.rewind !== undefined) { this.resetTo(payload.rewind); this.wake() }
    if (payload.ping !== undefined) this.sendPayload(JSON.stringify({ pong: payload.ping })).catch(() => {})
    if (payload.pong !== undefined) this.pings.get(payload.pong)?.(0)
  }

  /**
   * Check each envelope, store the good ones with the new high-water mark and
   * the ratchet record, atomically (`inbox.acceptFrame`: one statement).
   *
   * A frame that brings no new event (an ack, a ping, a hello, duplicates)
   * only advances the receiving chain: its record is saved a moment later
   * (`saveSoon`), or sooner by the next send or accepted frame, which save
   * the whole record. Losing that moment to a crash costs nothing: an older
   * receiving chain still decrypts what the peer sends next, and an ack or
   * a hello replayed into that window only repeats what the link already knows.
   * Sending still saves before every frame leaves (a counter is never reused).
   */
  private async accept (events: NonNullable<Payload['events']>, upTo: number, s: PeerSession): Promise<void> {
    const rows: InboxRow[] = []
    let top = this.lastIn
    const now = nowSeconds()
    for (const { seq, env } of events) {
      if (seq <= top) { this.c.stats.duplicates++; continue }
      top = seq
      try {
        const checked = checkEnvelope(env, { sender: this.uuid, self: this.c.identity.uuid, now }, this.init.limits)
        rows.push({ from: this.uuid, seq, envelope: checked, json: JSON.stringify(checked) })
      } catch (err) {
        this.c.refusals.refuse(err, { peer: this.uuid, event: eventName(env) })
      }
    }
    // events that expired at the sender leave holes; the frame's range covers them
    if (upTo > top) top = upTo
    if (top === this.lastIn) { this.saveSoon(); if (events.length > 0) this.scheduleAck(); return }
    const session = s.serialized()
    if (session !== null && rows.length <= Inbox.FRAME_ROWS_MAX) {
      await this.c.inbox.acceptFrame({ from: this.uuid, rows, lastIn: top, session })
    } else {
      await this.c.inbox.write(async (tx, insert) => {
        await insert(rows)
        await tx.updateTable('peer_seq').set({ last_in: top }).where('peer_uuid', '=', this.uuid).execute()
        await s.save(tx)
      })
    }
    this.sessionDirty = false
    this.lastIn = top
    this.c.stats.eventsIn += rows.length
    this.scheduleAck()
  }

  /** Save the ratchet record within SAVE_SOON_MS, unless something else saves it first. */
  private saveSoon (): void {
    this.sessionDirty = true
    if (this.saveTimer !== null) return
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null
      this.flushSession().catch((err) => { this.log.warn({ err: (err as Error).message }, 'could not save the ratchet record') })
    }, SAVE_SOON_MS)
  }

  private async flushSession (): Promise<void> {
    if (!this.sessionDirty) return
    await this.c.ratchet.withPeer(this.uuid, async (s) => {
      if (!this.sessionDirty) return
      this.sessionDirty = false
      await s.save(this.c.db)
    })
  }

  private async onHello (ack: number): Promise<void> {
    await this.catchUpSequence(ack)
    this.helloReceived = true
    // only now is the link up: a peer that takes the connection and then
    // refuses it (it banned us) must not reset the backoff
    this.attempt = 0
    this.resetTo(ack)
    if (this.helloSentOn !== this.ws) this.sendHello()
    this.wake()
  }

  // ---- re-keying ----------------------------------------------------------

  private afterDecryptFailure (err: unknown): void {
    // the first frame of a connection failing means our sessions differ (a
    // restore from an old backup): the peer then waits for our hello, so
    // waiting for more failures would wait forever
    const lost = err instanceof NoSessionError ||
      ((err instanceof DecryptError || err instanceof ReplayError) && !this.decryptedHere) ||
      (err instanceof DecryptError && ++this.decryptFailures >= DECRYPT_FAILURES_BEFORE_REKEY)
    if (!lost || Date.now() - this.lastRekey < REKEY_INTERVAL_MS) return
    this.lastRekey = Date.now()
    this.decryptFailures = 0
    this.rekey().catch((e) => { this.log.warn({ err: (e as Error).message }, 're-key failed') })
  }

  /**
   * Our session no longer matches the peer's. The dialer starts a new one from
   * the peer's bundle; the acceptor asks the dialer to, with a signed
   * session-reset carrying its current bundle. Unacknowledged events stay in
   * the outbox and go again once the new session is up.
   */
  private async rekey (): Promise<void> {
    const peer = this.peer
    if (peer === undefined || this.ws === null) return
    this.log.info({ role: this.role }, 'ratchet session lost; re-keying')
    if (this.role === 'dialer') {
      await this.restartSession(peer.bundle)
      return
    }
    const iat = nowSeconds()
    const env = { name: 'session-reset', meta: { from: this.c.identity.uuid, to: this.uuid, iat, exp: iat + 300 }, data: { dh_pub_key: bundleOf(this.c.identity.signal), nonce: randomBytes(16).toString('hex') } }
    const body = await encryptAndSign(Buffer.from(JSON.stringify(env)), peer.publicKey, this.c.signingKey?.(this.uuid) ?? this.c.identity.privateKey)
    this.ws.send(encodeGpg({ v: 1, from: this.c.identity.uuid, to: this.uuid }, body))
  }

  /** (dialer) Start a fresh session from `bundle`; the old one is archived, not lost, by libsignal. */
  async restartSession (bundle: PeerInfo['bundle']): Promise<void> {
    await this.c.ratchet.withPeer(this.uuid, async (s) => {
      await s.initiate(bundle)
      await s.save(this.c.db)
    })
    this.helloReceived = false
    this.sendHello()
  }
}

function eventName (env: unknown): string | null {
  const n = (env as { name?: unknown } | null)?.name
  return typeof n === 'string' ? n.slice(0, 64) : null
}
