#!/usr/bin/env node
/**
 * center-rsync-receive: the forced command of a peer's key in the sync
 * account's authorized_keys (`--socket S --peer UUID` come from that line,
 * so a key can only ever speak for its own peer). It asks the local centerd
 * whether the ssh command is an rsync receive this peer was authorised for,
 * runs the rsync centerd hands back (no shell) into the staging mirror, then
 * asks centerd to check and merge it. Exit 0 = applied; 3 = refused (the
 * reason goes to stderr, which ssh carries back to the pushing peer).
 */
import { spawn } from 'node:child_process'
import { connect } from 'node:net'
import { onLines, writeLine } from '../rpc/ndjson.js'

function arg (name: string): string {
  const i = process.argv.indexOf(name)
  const v = i < 0 ? undefined : process.argv[i + 1]
  if (v === undefined) { process.stderr.write(`center-sync: missing ${name}\n`); process.exit(2) }
  return v
}

const sock = connect(arg('--socket'))
const peer = arg('--peer')
let step: 'begin' | 'rsync' | 'commit' = 'begin'
let closed = false

function refuse (message: string, code = 3): never {
  process.stderr.write(`center-sync: ${message}\n`)
  process.exit(code)
}

sock.on('error', (err) => { refuse(`centerd is not reachable: ${err.message}`) })
sock.on('close', () => { closed = true; if (step !== 'rsync') refuse('centerd closed the connection') })
sock.on('connect', () => { writeLine(sock, { op: 'begin', peer, command: process.env.SSH_ORIGINAL_COMMAND ?? '' }) })
onLines(sock, 1024 * 1024, (msg) => {
  const m = msg as { argv?: string[], error?: { code: string, message: string }, report?: unknown }
  if (m.error !== undefined) refuse(`refused (${m.error.code}): ${m.error.message}`)
  if (step === 'begin' && Array.isArray(m.argv)) {
    step = 'rsync'
    const [cmd, ...args] = m.argv as [string, ...string[]]
    const child = spawn(cmd, args, { stdio: 'inherit' })
    child.on('exit', (code, signal) => {
      if (code !== 0) { sock.destroy(); process.exit(code ?? (signal !== null ? 20 : 1)) }
      // centerd died while rsync ran: nothing will be merged, say so instead of waiting forever
      if (closed) refuse('centerd went away during the transfer; nothing was applied')
      step = 'commit'
      writeLine(sock, { op: 'commit' })
    })
    return
  }
  if (step === 'commit') { sock.destroy(); process.exit(0) }
}, () => { refuse('bad answer from centerd') })
