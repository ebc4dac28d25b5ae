import { execFileSync, spawnSync } from 'node:child_process'
import { aptInstall } from './apt.js'
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** GnuPG (Debian's gnupg), installed when missing and we are root. */
export function ensureGpg (): void {
  if (spawnSync('gpg', ['--version'], { stdio: 'ignore' }).status === 0) return
  aptInstall(['gnupg'])
  if (spawnSync('gpg', ['--version'], { stdio: 'ignore' }).status !== 0) throw new Error('gpg is not installed (apt-get install gnupg)')
}

/** A throwaway GNUPGHOME; `gpg(args)` runs in it in batch mode. */
export function gpgHome (): { home: string, gpg: (args: string[], input?: string) => { status: number, out: string } } {
  const home = mkdtempSync(join(tmpdir(), 'center-gnupg-'))
  chmodSync(home, 0o700)
  writeFileSync(join(home, 'gpg-agent.conf'), 'allow-loopback-pinentry\n')
  return {
    home,
    gpg: (args, input) => {
      const r = spawnSync('gpg', ['--homedir', home, '--batch', '--yes', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], { input, encoding: 'utf8' })
      return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` }
    }
  }
}

export function killAgent (home: string): void {
  try { execFileSync('gpgconf', ['--homedir', home, '--kill', 'gpg-agent'], { stdio: 'ignore' }) } catch {}
}
