import { spawnSync } from 'node:child_process'

let updated = false

/**
 * Install Debian packages the tests need, as a fresh machine lacks them.
 * Only as root; `preseed` is fed to debconf first (answers for slapd etc.).
 * Returns apt-get's exit status (null when not root).
 */
export function aptInstall (packages: string[], preseed?: string): number | null {
  if (process.getuid?.() !== 0) return null
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  if (preseed !== undefined) spawnSync('debconf-set-selections', [], { input: preseed, stdio: ['pipe', 'ignore', 'ignore'] })
  if (!updated) {
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env })
    updated = true
  }
  return spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], { stdio: 'ignore', env }).status
}
