import type { IncomingMessage } from 'node:http'
import type { WebSocket } from 'ws'
import type { Config } from '../config/index.js'
import { BannedPeerError, FrameTooLargeError, MalformedFrameError, RateLimitedError, ReplayError, UnknownPeerError, toWireError } from '../errors.js'
import { nowSeconds } from '../wire/envelope.js'
import type { Identity } from '../identity/files.js'
import { verifyPeerSignature } from '../peers/key-rotation.js'
import type { PeerDirectory, PeerInfo } from '../peers/directory.js'
import type { JoinService } from '../peers/join.js'
import { decodeFrame, encodeErr, encodeOk, type Frame } from '../wire/frame.js'
import { Link, type LinkComponents } from './link.js'
import { TokenBucket } from './token-bucket.js'

export interface LinkManagerInit {
  limits: Config['limits']
  delivery: Config['delivery']
}

export type LinkManagerComponents = Omit<LinkComponents, 'onControl'> & {
  identity: Identity
  peers: PeerDirectory
  join: () => JoinService
}

const FIRST_FRAME_TIMEOUT_MS = 10_000

/**
 * Owns one Link per admitted peer and decides what an incoming connection is:
 * a one-shot control frame (NEW, GPG) answered with OK/ERR, or a peer's link
 * (its first GPG+ frame, signature checked before the socket is attached).
 */
export class LinkManager {
  private readonly links = new Map<string, Link>()
  private started = false
  private readonly newLimiter = new Map<string, TokenBucket>()

  constructor (private readonly init: LinkManagerInit, private readonly c: LinkManagerComponents) {}

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.c.peers.on('admitted', this.onAdmitted)
    this.c.peers.on('address', this.onAddress)
    for (const p of this.c.peers.activeList()) await this.ensure(p)
  }

  stop (): void {
    if (!this.started) return
    this.started = false
    this.c.peers.off('admitted', this.onAdmitted)
    this.c.peers.off('address', this.onAddress)
    for (const l of this.links.values()) l.stop()
    this.links.clear()
  }

  private readonly onAdmitted = (p: PeerInfo): void => {
    this.ensure(p).catch((err) => { this.c.logger.error({ err, peer: p.uuid }, 'cannot start link') })
  }

  /** A verified peer record moved the peer: reach it at the new address. */
  private readonly onAddress = (p: PeerInfo): void => {
    this.c.logger.info({ peer: p.uuid, address: p.address }, 'peer moved; dialing its new address')
    this.links.get(p.uuid)?.redial()
  }

  private async ensure (p: PeerInfo): Promise<Link> {
    let link = this.links.get(p.uuid)
    if (link !== undefined) return link
    // one connection per pair: the peer with the lower UUID dials (and
    // starts the ratchet session); the other dials only if the link stays down
    const role = this.c.identity.uuid < p.uuid ? 'dialer' : 'acceptor'
    link = new Link({ role, limits: this.init.limits, delivery: this.init.delivery }, { ...this.c, onControl: this.onLinkControl }, p)
    this.links.set(p.uuid, link)
    if (this.started) await link.start()
    return link
  }

  /** The peer was banned: close its link for good. */
  drop (uuid: string): void {
    this.links.get(uuid)?.stop()
    this.links.delete(uuid)
  }

  get (uuid: string): Link | undefined { return this.links.get(uuid) }
  all (): Link[] { return [...this.links.values()] }

  /** The outbox committed rows: for each peer, the highest seq queued. */
  queued (tops: Map<string, number>): void {
    for (const [p, seq] of tops) this.links.get(p)?.queued(seq)
  }

  /** A verified session-reset: the dialer restarts the session from the bundle the acceptor sent. */
  async sessionReset (peer: string, bundle: PeerInfo['bundle']): Promise<void> {
    await this.c.peers.setBundle(peer, bundle)
    const link = this.links.get(peer)
    if (link === undefined) return
    if (link.role !== 'dialer') {
      this.c.logger.warn({ peer }, 'session-reset received by the accepting side; ignored (the dialer starts sessions)')
      return
    }
    await link.restartSession(bundle)
  }

  private readonly onLinkControl = async (link: Link, frame: Extract<Frame, { kind: 'gpg' }>): Promise<void> => {
    try {
      await this.c.join().handleGpg(frame)
    } catch (err) {
      this.c.refusals.refuse(err, { peer: link.uuid, event: 'gpg' })
    }
  }

  // ---- incoming connections ---------------------------------------------------

  accept (ws: WebSocket, req: IncomingMessage): void {
    const remote = req.socket.remoteAddress ?? 'unknown'
    const queued: Buffer[] = []
    let decided = false
    const timer = setTimeout(() => { if (!decided) ws.close(4408, 'no frame in time') }, FIRST_FRAME_TIMEOUT_MS)
    const onMessage = (data: Buffer): void => {
      if (decided) { queued.push(data); return }
      decided = true
      clearTimeout(timer)
      this.first(ws, data, remote, queued, onMessage).catch((err) => { this.c.logger.error({ err }, 'connection setup failed') })
    }
    ws.on('message', onMessage)
    ws.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' && !decided) this.c.refusals.refuse(new FrameTooLargeError(`frame larger than ${this.init.limits.maxFrameBytes} bytes; connection closed`), { remote })
    })
    ws.once('close', () => clearTimeout(timer))
  }

  private async first (ws: WebSocket, data: Buffer, remote: string, queued: Buffer[], onMessage: (d: Buffer) => void): Promise<void> {
    let frame: Frame
    try {
      frame = decodeFrame(data)
    } catch (err) {
      this.reply(ws, err, { remote })
      return
    }
    if (frame.kind === 'gpg+') { await this.acceptLink(ws, frame, data, remote, queued, onMessage); return }
    try {
      if (frame.kind === 'new') {
        this.limitNew(remote)
        this.reply(ws, null, {}, await this.c.join().handleNew(frame.envelope, remote))
      } else if (frame.kind === 'gpg') {
        this.reply(ws, null, {}, await this.c.join().handleGpg(frame))
      } else {
        throw new MalformedFrameError(`a connection must start with NEW, GPG or GPG+, not ${frame.kind}`)
      }
    } catch (err) {
      const from = frame.kind === 'gpg' ? frame.header.from : (frame.kind === 'new' ? (frame.envelope as any)?.meta?.from : null)
      this.reply(ws, err, { remote, peer: typeof from === 'string' ? from.slice(0, 36) : null, event: frame.kind === 'new' ? 'new-peer-server' : frame.kind })
    }
  }

  private async acceptLink (ws: WebSocket, frame: Extract<Frame, { kind: 'gpg+' }>, data: Buffer, remote: string, queued: Buffer[], onMessage: (d: Buffer) => void): Promise<void> {
    const from = frame.header.from
    try {
      const peer = this.c.peers.get(from)
      if (peer === undefined) throw new UnknownPeerError(`frame from ${from}, which is not an admitted peer`)
      if (peer.state === 'banned') throw new BannedPeerError(`peer ${from} is banned here`)
      await verifyPeerSignature(peer, frame.signed, frame.signature)
      // measured before the age test: a peer refused for its clock is the one to report
      const link = await this.ensure(peer)
      link.clock.record(frame.header.iat)
      // a new connection takes over the peer's link: an old frame replayed
      // by someone else must not be able to do that
      const age = nowSeconds() - (frame.header.iat ?? 0)
      if (Math.abs(age) > this.init.limits.clockSkewSeconds) throw new ReplayError(`first frame of a connection is ${age} s old (allowed skew ${this.init.limits.clockSkewSeconds} s)`)
      ws.off('message', onMessage)
      if (!link.attach(ws, false)) return
      link.enqueue(data, frame)
      for (const q of queued) link.enqueue(q)
    } catch (err) {
      this.c.refusals.refuse(err, { peer: from, remote })
      ws.close(4401, (err as Error).name)
    }
  }

  /** Answer a one-shot connection with OK or ERR and close it. Refusals are logged here, once. */
  private reply (ws: WebSocket, err: unknown, ctx: { remote?: string, peer?: string | null, event?: string }, body?: unknown): void {
    if (err === null) {
      ws.send(encodeOk(body ?? {}), () => ws.close(1000))
      return
    }
    this.c.refusals.refuse(err, ctx)
    const w = toWireError(err)
    ws.send(encodeErr(w.code, w.message), () => ws.close(1000))
  }

  /** At most a few NEW frames a minute from one address: each costs a signature check. */
  private limitNew (remote: string): void {
    let b = this.newLimiter.get(remote)
    if (b === undefined) {
      if (this.newLimiter.size > 10_000) this.newLimiter.clear()
      b = new TokenBucket(10 / 60, 10)
      this.newLimiter.set(remote, b)
    }
    if (!b.take()) throw new RateLimitedError('too many join requests from this address; wait a minute')
  }
}
