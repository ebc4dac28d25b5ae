import { existsSync, readFileSync } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import { hostname, userInfo } from 'node:os'
import { parse as parseToml } from 'smol-toml'
import { ConfigError } from '../errors.js'
import { DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, SCHEMA, type RawConfig, validateRaw } from './schema.js'

export const DEFAULT_CONFIG_PATH = '/etc/center/center.toml'
export const DEFAULT_STATE_DIR = '/var/lib/center'

export interface HostPort { host: string, port: number }

/** The fully defaulted, validated configuration. Built once at boot. */
export interface Config {
  /** the file this came from, or null for embedded defaults */
  configPath: string | null
  /** keys, embedded database, sockets: everything the peer keeps */
  stateDir: string
  peer: {
    domain: string
    admin: string
    listen: HostPort
    /** what other peers dial; null = derived from the listen address once bound */
    advertise: string | null
    /** greet newcomers other peers introduce, or queue them in `peer requests` */
    greeting: 'auto' | 'manual'
    /** apply other peers' excommunication notices, or queue them in `peer bans` */
    excommunication: 'auto' | 'manual'
  }
  database: {
    /** postgres://… ; null selects the embedded PGlite under stateDir */
    url: string | null
    pgliteDir: string
  }
  services: { socket: string }
  admin: { socket: string }
  limits: {
    maxFrameBytes: number
    clockSkewSeconds: number
    maxTtlSeconds: number
    defaultTtlSeconds: number
    rateFramesPerSecond: number
    rateBurstFrames: number
    maxEventBytes: number
  }
  delivery: {
    batchMaxEvents: number
    windowFrames: number
    ackTimeoutMs: number
    retryMinMs: number
    retryMaxMs: number
  }
  log: { level: string }
  /** Prometheus /metrics on loopback; null when `listen = "off"` */
  metrics: { listen: HostPort | null }
  /** the box's OpenLDAP; null url = accounts are not provisioned on this peer */
  ldap: {
    url: string | null
    baseDn: string
    bindDn: string
    /** file holding the bind password (0600); read at start, never logged */
    passwordFile: string
    /** CA certificate to trust for ldaps:// or StartTLS; null = system CAs */
    caFile: string | null
    starttls: boolean
    /**
     * add a backfill's new users in RFC 5805 transactions (one commit per 100
     * users). Off by default: OpenLDAP 2.5.13 (Debian 12) segfaults when a
     * connection drops with a transaction open, so a crash of centerd would
     * take the box's slapd (and every SSH login) down with it.
     */
    transactions: boolean
  }
  /** the /center tree (RFC 3 "Center Directory") and its per-user quota */
  center: {
    root: string
    quota: 'btrfs' | 'setquota' | 'xfs' | 'none'
    /** mount point of the filesystem holding root (setquota / xfs) */
    quotaMount: string | null
    userLimitBytes: number
  }
  /** live rsync-over-SSH sync of the shared part of /center */
  sync: {
    enabled: boolean
    /** how long changes are gathered before a push */
    delayMs: number
    /** full rescan period, catching what the watcher missed */
    rescanSeconds: number
    /** the system account peers log in as (forced command: rsync into root only) */
    sshUser: string
    /** private key used to push to peers (0600) */
    sshKey: string
    sshPort: number
    /** this box's sshd host public key, sent to peers for their known_hosts */
    hostKey: string
  }
}

export interface LoadConfigOptions {
  /** explicit --config; when given the file must exist */
  configPath?: string | undefined
  env?: NodeJS.ProcessEnv
  cwd?: string
}

/**
 * Read the TOML file (if any), apply `CENTER_*` environment overrides, validate
 * once, and fill in defaults. This is the only module that reads the environment.
 */
export function loadConfig (opts: LoadConfigOptions = {}): Config {
  const env = opts.env ?? process.env
  const cwd = opts.cwd ?? process.cwd()
  const path = pickConfigPath(opts.configPath ?? env.CENTER_CONFIG, cwd)
  const raw = path === null ? {} : readToml(path)
  applyEnv(raw, env)
  validateRaw(raw, path ?? 'environment')
  return toConfig(raw, path, cwd)
}

function pickConfigPath (explicit: string | undefined, cwd: string): string | null {
  if (explicit !== undefined && explicit !== '') {
    const p = resolve(cwd, explicit)
    if (!existsSync(p)) throw new ConfigError(`config file ${p} does not exist (run \`centerctl init --config ${p}\` to create it)`)
    return p
  }
  return existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : null
}

function readToml (path: string): RawConfig {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`, { cause: err })
  }
  try {
    return parseToml(text) as RawConfig
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid TOML: ${(err as Error).message}`, { cause: err })
  }
}

/** `CENTER_PEER_LISTEN=…` overrides `[peer] listen`. Names come from the schema, so every key has one. */
export function envNameFor (section: string | null, key: string): string {
  return ['CENTER', section, key].filter(Boolean).join('_').toUpperCase()
}

function applyEnv (raw: RawConfig, env: NodeJS.ProcessEnv): void {
  for (const [key, spec] of Object.entries(SCHEMA.properties)) {
    if ('properties' in spec) {
      for (const [sub, subSpec] of Object.entries(spec.properties)) {
        const value = env[envNameFor(key, sub)]
        if (value === undefined) continue
        const section = (raw[key] ??= {}) as Record<string, unknown>
        section[sub] = coerce(value, subSpec.type, envNameFor(key, sub))
      }
    } else {
      const value = env[envNameFor(null, key)]
      if (value !== undefined) raw[key] = coerce(value, spec.type, envNameFor(null, key))
    }
  }
}

function coerce (value: string, type: string | undefined, name: string): unknown {
  if (type === 'integer') {
    if (!/^-?\d+$/.test(value)) throw new ConfigError(`${name}: must be an integer, got ${JSON.stringify(value)}`)
    return Number(value)
  }
  if (type === 'boolean') {
    if (value !== 'true' && value !== 'false') throw new ConfigError(`${name}: must be true or false, got ${JSON.stringify(value)}`)
    return value === 'true'
  }
  return value
}

export function parseHostPort (value: string, key: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(value)
  const port = m === null ? NaN : Number(m[3])
  if (m === null || port > 65535) throw new ConfigError(`${key}: expected HOST:PORT (IPv6 in brackets), got ${JSON.stringify(value)}`)
  return { host: m[1] ?? m[2] ?? '', port }
}

function toConfig (raw: RawConfig, path: string | null, cwd: string): Config {
  const base = path === null ? cwd : dirname(path)
  const rel = (p: string): string => (isAbsolute(p) ? p : resolve(base, p))
  // the system config lives in /etc, but state belongs in /var/lib (FHS)
  const stateDir = rel(raw.state_dir ?? (path === null ? './var' : path === DEFAULT_CONFIG_PATH ? DEFAULT_STATE_DIR : '.'))
  const inState = (p: string | undefined, dflt: string): string => (p === undefined ? resolve(stateDir, dflt) : rel(p))
  const peer = raw.peer ?? {}
  const db = raw.database ?? {}
  const limits = raw.limits ?? {}
  const delivery = raw.delivery ?? {}
  return {
    configPath: path,
    stateDir,
    peer: {
      domain: peer.domain ?? hostname(),
      admin: peer.admin ?? safeUser(),
      listen: parseHostPort(peer.listen ?? '127.0.0.1:7700', 'peer.listen'),
      advertise: peer.advertise ?? null,
      greeting: peer.greeting ?? 'manual',
      excommunication: peer.excommunication ?? 'manual'
    },
    database: { url: db.url ?? null, pgliteDir: inState(db.pglite_dir, 'pgdata') },
    services: { socket: inState(raw.services?.socket, 'services.sock') },
    admin: { socket: inState(raw.admin?.socket, 'admin.sock') },
    limits: {
      maxFrameBytes: limits.max_frame_bytes ?? 4 * 1024 * 1024,
      clockSkewSeconds: limits.clock_skew_seconds ?? 60,
      maxTtlSeconds: limits.max_ttl_seconds ?? MAX_TTL_SECONDS,
      defaultTtlSeconds: limits.default_ttl_seconds ?? DEFAULT_TTL_SECONDS,
      rateFramesPerSecond: limits.rate_frames_per_second ?? 500,
      rateBurstFrames: limits.rate_burst_frames ?? 2000,
      maxEventBytes: limits.max_event_bytes ?? 64 * 1024
    },
    delivery: {
      batchMaxEvents: delivery.batch_max_events ?? 512,
      windowFrames: delivery.window_frames ?? 8,
      ackTimeoutMs: delivery.ack_timeout_ms ?? 10_000,
      retryMinMs: delivery.retry_min_ms ?? 250,
      retryMaxMs: delivery.retry_max_ms ?? 120_000
    },
    log: { level: raw.log?.level ?? 'info' },
    metrics: { listen: raw.metrics?.listen === 'off' ? null : parseHostPort(raw.metrics?.listen ?? '127.0.0.1:9477', 'metrics.listen') },
    ldap: {
      url: raw.ldap?.url ?? null,
      baseDn: raw.ldap?.base_dn ?? 'dc=center,dc=local',
      bindDn: raw.ldap?.bind_dn ?? 'cn=admin,dc=center,dc=local',
      passwordFile: inState(raw.ldap?.password_file, 'ldap.secret'),
      caFile: raw.ldap?.ca_file === undefined ? null : rel(raw.ldap.ca_file),
      starttls: raw.ldap?.starttls ?? true,
      transactions: raw.ldap?.transactions ?? false
    },
    center: {
      root: rel(raw.center?.root ?? '/center'),
      quota: raw.center?.quota ?? 'none',
      quotaMount: raw.center?.quota_mount === undefined ? null : rel(raw.center.quota_mount),
      userLimitBytes: (raw.center?.user_limit_mb ?? 5) * 1024 * 1024
    },
    sync: {
      enabled: raw.sync?.enabled ?? false,
      delayMs: raw.sync?.delay_ms ?? 50,
      rescanSeconds: raw.sync?.rescan_seconds ?? 600,
      sshUser: raw.sync?.ssh_user ?? 'center-sync',
      sshKey: inState(raw.sync?.ssh_key, 'sync_ed25519'),
      sshPort: raw.sync?.ssh_port ?? 22,
      hostKey: rel(raw.sync?.host_key ?? '/etc/ssh/ssh_host_ed25519_key.pub')
    }
  }
}

function safeUser (): string {
  try {
    return userInfo().username
  } catch {
    return 'root'
  }
}
