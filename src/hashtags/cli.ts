/**
 * `center-hashtags`: print a node ID or a hashtag key, for operators and for
 * checking another implementation.
 *
 *   center-hashtags node-id --ip ADDR --domain NAME --vserver N
 *   center-hashtags key TAG
 */
import { HashtagError } from './errors.js'
import { idToHex, nodeId, normaliseTag, registeredDomain, subnet64, tagKey } from './ids.js'

export interface CliIo {
  out: (line: string) => void
  err: (line: string) => void
}

const USAGE = [
  'usage: center-hashtags node-id --ip IPV6 --domain NAME [--vserver N]',
  '       center-hashtags key TAG'
].join('\n')

class UsageError extends Error {}
Object.defineProperty(UsageError.prototype, 'name', { value: 'UsageError' })

function flags (args: string[]): Map<string, string> {
  const out = new Map<string, string>()
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string
    const eq = a.indexOf('=')
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument ${a}`)
    if (eq > 0) { out.set(a.slice(2, eq), a.slice(eq + 1)); continue }
    const v = args[i + 1]
    if (v === undefined) throw new UsageError(`${a} needs a value`)
    out.set(a.slice(2), v)
    i++
  }
  return out
}

function nodeIdCommand (args: string[], io: CliIo): void {
  const f = flags(args)
  for (const k of f.keys()) if (!['ip', 'domain', 'vserver'].includes(k)) throw new UsageError(`unknown option --${k}`)
  const ip = f.get('ip')
  const domain = f.get('domain')
  if (ip === undefined || domain === undefined) throw new UsageError('node-id needs --ip and --domain')
  const vsText = f.get('vserver') ?? '0'
  if (!/^\d{1,5}$/.test(vsText)) throw new UsageError('--vserver must be a non-negative integer')
  const vserver = Number(vsText)
  const id = nodeId({ ip, domain, vserver })
  io.out(idToHex(id))
  io.err(`subnet /64 ${subnet64(ip)}  registered domain ${registeredDomain(domain)}  vserver ${vserver}`)
}

function keyCommand (args: string[], io: CliIo): void {
  if (args.length !== 1) throw new UsageError('key needs exactly one TAG')
  const tag = args[0] as string
  io.out(idToHex(tagKey(tag)))
  io.err(`normalised tag: ${normaliseTag(tag)}`)
}

/** run the command; returns the exit code (0 ok, 2 bad input) */
export function main (argv: string[], io: CliIo = { out: l => { process.stdout.write(l + '\n') }, err: l => { process.stderr.write(l + '\n') } }): number {
  const [cmd, ...rest] = argv
  try {
    if (cmd === 'node-id') nodeIdCommand(rest, io)
    else if (cmd === 'key') keyCommand(rest, io)
    else if (cmd === '--help' || cmd === '-h' || cmd === 'help') { io.out(USAGE); return 0 } else throw new UsageError(cmd === undefined ? 'no command given' : `unknown command ${cmd}`)
    return 0
  } catch (err) {
    if (err instanceof UsageError) { io.err(`center-hashtags: ${err.message}\n${USAGE}`); return 2 }
    if (err instanceof HashtagError) { io.err(`center-hashtags: ${err.message} (${err.code})`); return 2 }
    throw err
  }
}
