import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { promisify } from 'node:util'
import { SyncRefusedError } from './errors.js'

const run = promisify(execFile)

/** What a peer told us about reaching it over SSH (its signed `sync-key` event). */
export interface PeerSshInfo {
  uuid: string
  domain: string
  /** host part of its peer address */
  host: string
  port: number
  user: string
  /** the public key it pushes with: installed in our sync account's authorized_keys */
  publicKey: string
  /** its sshd host key: goes into our known_hosts for it */
  hostKey: string
  /** its /center root (the forced command only allows rsync into trees under it) */
  root: string
}

const PUBKEY = /^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) [A-Za-z0-9+/=]{32,1024}$/

/** One `type base64` public key, comments dropped; anything else is refused. */
export function checkPublicKey (raw: unknown, what: string): string {
  const parts = typeof raw === 'string' ? raw.trim().split(/\s+/) : []
  const k = parts.slice(0, 2).join(' ')
  if (!PUBKEY.test(k)) throw new SyncRefusedError(`${what} is not an ssh public key`)
  return k
}

/** Make the push key pair once (ed25519, no passphrase, 0600). */
export async function ensureKeyPair (keyFile: string, comment: string): Promise<string> {
  if (!existsSync(keyFile)) {
    await mkdir(dirname(keyFile), { recursive: true, mode: 0o700 })
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', keyFile])
  }
  return checkPublicKey(await readFile(`${keyFile}.pub`, 'utf8'), keyFile)
}

/**
 * The authorized_keys line for one peer: no pty, no forwarding, and the
 * forced command names the peer, so the receiver knows who is pushing
 * whatever key-to-peer mapping the client claims.
 */
export function authorizedKeyLine (peer: PeerSshInfo, forced: { node: string, script: string, socket: string }): string {
  const cmd = `${forced.node} ${forced.script} --socket ${forced.socket} --peer ${peer.uuid}`
  if (/["\\\s]{2,}|["\\]/.test(cmd)) throw new SyncRefusedError('forced command paths must not contain quotes or backslashes')
  return `restrict,command="${cmd}" ${peer.publicKey} center-sync:${peer.uuid}`
}

export function knownHostsLines (peers: PeerSshInfo[]): string {
  return peers.map((p) => `${p.port === 22 ? p.host : `[${p.host}]:${p.port}`} ${p.hostKey}`).join('\n') + '\n'
}

/** Write a file atomically (temp + rename) with the given mode. */
export async function writeAtomic (file: string, text: string, mode: number): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 })
  const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`
  await writeFile(tmp, text, { mode })
  await rename(tmp, file)
}

/** The sync info of every peer that sent us a sync-key, kept as JSON in the state dir. */
export class PeerSshStore {
  private readonly peers = new Map<string, PeerSshInfo>()
  constructor (private readonly file: string) {}

  async load (): Promise<void> {
    try {
      const list = JSON.parse(await readFile(this.file, 'utf8')) as PeerSshInfo[]
      for (const p of list) this.peers.set(p.uuid, p)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }

  get (uuid: string): PeerSshInfo | undefined { return this.peers.get(uuid) }
  list (): PeerSshInfo[] { return [...this.peers.values()] }

  /** Returns whether anything changed. */
  async set (p: PeerSshInfo): Promise<boolean> {
    const old = this.peers.get(p.uuid)
    if (old !== undefined && JSON.stringify(old) === JSON.stringify(p)) return false
    this.peers.set(p.uuid, p)
    await writeAtomic(this.file, JSON.stringify(this.list(), null, 1), 0o600)
    return true
  }

  async remove (uuid: string): Promise<void> {
    if (!this.peers.delete(uuid)) return
    await writeAtomic(this.file, JSON.stringify(this.list(), null, 1), 0o600)
  }
}

/** uid and gid of a system account (the sync user). */
export async function accountIds (user: string): Promise<{ uid: number, gid: number }> {
  try {
    const uid = Number((await run('id', ['-u', user])).stdout.trim())
    const gid = Number((await run('id', ['-g', user])).stdout.trim())
    return { uid, gid }
  } catch {
    throw new SyncRefusedError(`the sync account ${user} does not exist (create it: useradd --system --shell /bin/sh ${user})`)
  }
}
