#!/usr/bin/env node
/**
 * center-authorized-keys USER: sshd's AuthorizedKeysCommand (docs/admin/accounts.md).
 *
 * Prints the valid public keys of /center/users/USER/.ssh/authorized_keys,
 * and nothing (exit 1) for a user who is unknown or locked in this box's LDAP
 * (a lock from any peer, a ppolicy lockout, or `user ban --local`). It runs
 * as root (the LDAP bind password is root's), looks the user up, then drops
 * to the user's uid and gid before reading their files, and never follows a
 * symlink below /center/users. Any doubt means no keys: sshd then refuses.
 */
import { pino } from 'pino'
import { loadConfig } from '../config/index.js'
import { directoryFromConfig } from '../accounts/connect.js'
import { readAuthorizedKeys } from '../accounts/home.js'
import { parseSshPublicKey } from '../accounts/keys.js'
import { checkUsernameSyntax } from '../accounts/names.js'

function fail (msg: string): never {
  process.stderr.write(`center-authorized-keys: ${msg}\n`)
  process.exit(1)
}

async function main (argv: string[]): Promise<void> {
  const args = argv.slice(2)
  let configPath: string | undefined
  const i = args.indexOf('--config')
  if (i >= 0) { configPath = args[i + 1]; args.splice(i, 2) }
  if (args.length !== 1) fail('usage: center-authorized-keys [--config FILE] USER')
  const name = args[0] as string
  try { checkUsernameSyntax(name) } catch (err) { fail((err as Error).message) }
  const cfg = loadConfig({ configPath })
  if (cfg.ldap.url === null) fail('[ldap] url is not set: accounts are not provisioned on this box')
  const directory = await directoryFromConfig(cfg.ldap, pino({ level: 'silent' }))
  const user = await directory.getUser(name)
  if (user === null) fail(`no user ${name} in LDAP`)
  if (user.locked) fail(`user ${name} is locked`)
  if (process.getuid?.() === 0) {
    // the kernel then refuses whatever the user could not read themselves
    process.setgroups?.([])
    process.setgid?.(user.uidNumber)
    process.setuid?.(user.uidNumber)
  }
  const text = await readAuthorizedKeys({ root: cfg.center.root }, name, user.uidNumber)
  const out: string[] = []
  for (const line of text.split('\n')) {
    const l = line.trim()
    if (l === '' || l.startsWith('#')) continue
    try {
      out.push(parseSshPublicKey(l).line)
    } catch (err) {
      process.stderr.write(`center-authorized-keys: ${name}: skipped a line: ${(err as Error).message}\n`)
    }
  }
  process.stdout.write(out.map((l) => `${l}\n`).join(''))
}

main(process.argv).catch((err) => fail(`${(err as Error).name}: ${(err as Error).message}`))
