import { pino, type Logger, type DestinationStream } from 'pino'

export type { Logger }

/**
 * Paths that may hold secrets. pino replaces them before a line is written,
 * so a careless `log.info({ cfg })` still cannot leak a key or a token.
 */
const REDACT = [
  'token', '*.token', '*.*.token',
  'secret', '*.secret', '*.*.secret',
  'password', '*.password', '*.*.password',
  'privateKey', '*.privateKey', 'armoredPrivateKey', '*.armoredPrivateKey',
  'bindPassword', '*.bindPassword'
]

export interface LoggerInit {
  /** @default 'info' */
  level?: string
  /** where lines go; @default stdout (journald picks it up) */
  destination?: DestinationStream
  /** base fields on every line (e.g. the peer uuid) */
  base?: Record<string, unknown>
}

export function createRootLogger (init: LoggerInit = {}): Logger {
  const opts = {
    level: init.level ?? 'info',
    base: init.base ?? {},
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime
  }
  return init.destination === undefined ? pino(opts) : pino(opts, init.destination)
}

/** A child logger for one subsystem, e.g. `subsystem(root, 'transport')`. */
export function subsystem (root: Logger, name: string): Logger {
  return root.child({ sub: name })
}
