import { Ajv, type ErrorObject } from 'ajv'
import { ConfigError } from '../errors.js'

/** The TOML file as written by a sysadmin: snake_case keys, all optional. */
export interface RawConfig {
  state_dir?: string
  peer?: { domain?: string, admin?: string, listen?: string, advertise?: string, greeting?: 'auto' | 'manual', excommunication?: 'auto' | 'manual' }
  database?: { url?: string, pglite_dir?: string }
  services?: { socket?: string }
  admin?: { socket?: string }
  limits?: {
    max_frame_bytes?: number
    clock_skew_seconds?: number
    max_ttl_seconds?: number
    default_ttl_seconds?: number
    rate_frames_per_second?: number
    rate_burst_frames?: number
    max_event_bytes?: number
  }
  delivery?: { batch_max_events?: number, window_frames?: number, ack_timeout_ms?: number, retry_min_ms?: number, retry_max_ms?: number }
  log?: { level?: string }
  metrics?: { listen?: string }
  ldap?: { url?: string, base_dn?: string, bind_dn?: string, password_file?: string, ca_file?: string, starttls?: boolean, transactions?: boolean }
  center?: { root?: string, quota?: 'btrfs' | 'setquota' | 'xfs' | 'none', quota_mount?: string, user_limit_mb?: number }
  sync?: { enabled?: boolean, delay_ms?: number, rescan_seconds?: number, ssh_user?: string, ssh_key?: string, ssh_port?: number, host_key?: string }
  [key: string]: unknown
}

interface Leaf { type: string, minimum?: number, maximum?: number, minLength?: number, enum?: string[], pattern?: string }
interface Section { type: 'object', additionalProperties: false, properties: Record<string, Leaf> }

const posInt = (max: number): Leaf => ({ type: 'integer', minimum: 1, maximum: max })
const str: Leaf = { type: 'string', minLength: 1 }

export const SCHEMA: { type: 'object', additionalProperties: false, properties: Record<string, Leaf | Section> } = {
  type: 'object',
  additionalProperties: false,
  properties: {
    state_dir: str,
    peer: {
      type: 'object',
      additionalProperties: false,
      properties: {
        domain: { type: 'string', pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$' },
        admin: { type: 'string', pattern: '^[a-z_][a-z0-9_-]{0,31}$' },
        listen: str,
        advertise: str,
        greeting: { type: 'string', enum: ['auto', 'manual'] },
        excommunication: { type: 'string', enum: ['auto', 'manual'] }
      }
    },
    database: {
      type: 'object',
      additionalProperties: false,
      properties: {
        url: { type: 'string', pattern: '^postgres(ql)?://' },
        pglite_dir: str
      }
    },
    services: { type: 'object', additionalProperties: false, properties: { socket: str } },
    admin: { type: 'object', additionalProperties: false, properties: { socket: str } },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        max_frame_bytes: { type: 'integer', minimum: 4096, maximum: 64 * 1024 * 1024 },
        clock_skew_seconds: posInt(3600),
        max_ttl_seconds: posInt(365 * 24 * 3600),
        default_ttl_seconds: posInt(365 * 24 * 3600),
        rate_frames_per_second: posInt(1_000_000),
        rate_burst_frames: posInt(1_000_000),
        max_event_bytes: { type: 'integer', minimum: 1024, maximum: 16 * 1024 * 1024 }
      }
    },
    delivery: {
      type: 'object',
      additionalProperties: false,
      properties: {
        batch_max_events: posInt(10_000),
        window_frames: posInt(1024),
        ack_timeout_ms: posInt(3_600_000),
        retry_min_ms: posInt(3_600_000),
        retry_max_ms: posInt(3_600_000)
      }
    },
    metrics: { type: 'object', additionalProperties: false, properties: { listen: str } },
    log: { type: 'object', additionalProperties: false, properties: { level: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] } } },
    ldap: {
      type: 'object',
      additionalProperties: false,
      properties: {
        url: { type: 'string', pattern: '^(ldaps?|ldapi)://' },
        base_dn: str,
        bind_dn: str,
        password_file: str,
        ca_file: str,
        starttls: { type: 'boolean' },
        transactions: { type: 'boolean' }
      }
    },
    center: {
      type: 'object',
      additionalProperties: false,
      properties: {
        root: str,
        quota: { type: 'string', enum: ['btrfs', 'setquota', 'xfs', 'none'] },
        quota_mount: str,
        user_limit_mb: posInt(1024 * 1024)
      }
    },
    sync: {
      type: 'object',
      additionalProperties: false,
      properties: {
        enabled: { type: 'boolean' },
        delay_ms: { type: 'integer', minimum: 0, maximum: 60_000 },
        rescan_seconds: posInt(7 * 24 * 3600),
        ssh_user: { type: 'string', pattern: '^[a-z_][a-z0-9_-]{0,31}$' },
        ssh_key: str,
        ssh_port: posInt(65535),
        host_key: str
      }
    }
  }
}

export const DEFAULT_TTL_SECONDS = 7 * 24 * 3600
export const MAX_TTL_SECONDS = 30 * 24 * 3600

const ajv = new Ajv({ allErrors: true })
const validate = ajv.compile(SCHEMA)

/** Throws a ConfigError naming every bad key and what is wrong with it. */
export function validateRaw (raw: RawConfig, source: string): void {
  if (validate(raw)) {
    const dflt = raw.limits?.default_ttl_seconds ?? DEFAULT_TTL_SECONDS
    const max = raw.limits?.max_ttl_seconds ?? MAX_TTL_SECONDS
    if (dflt > max) throw new ConfigError(`${source}: limits.default_ttl_seconds (${dflt}) must not exceed limits.max_ttl_seconds (${max})`)
    return
  }
  const lines = (validate.errors ?? []).map(describe)
  throw new ConfigError(`${source}: invalid configuration: ${lines.join('; ')}`)
}

function describe (e: ErrorObject): string {
  const key = e.instancePath.replace(/^\//, '').replace(/\//g, '.')
  if (e.keyword === 'additionalProperties') {
    const extra = String((e.params as { additionalProperty: string }).additionalProperty)
    return `unknown key ${key === '' ? extra : `${key}.${extra}`}`
  }
  if (e.keyword === 'enum') return `${key} must be one of ${(e.params as { allowedValues: string[] }).allowedValues.join(', ')}`
  return `${key === '' ? '(top level)' : key} ${e.message ?? 'is invalid'}`
}
