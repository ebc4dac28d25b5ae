import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { PeerTableSnapshot, PeerTableStore } from './table.js'

/** Keeps the snapshot in memory; for tests and the simulator. */
export function memoryPeerTableStore (initial?: PeerTableSnapshot): PeerTableStore & { snapshot: PeerTableSnapshot | undefined } {
  const store = {
    snapshot: initial,
    async load () { return store.snapshot === undefined ? undefined : structuredClone(store.snapshot) },
    async save (s: PeerTableSnapshot) { store.snapshot = structuredClone(s) }
  }
  return store
}

/**
 * Keeps the snapshot in a JSON file (mode 0600: it names every peer's
 * addresses). Writes go to a temp file renamed over the old one, so a crash
 * mid-save leaves the previous table, never half of one.
 */
export function filePeerTableStore (path: string): PeerTableStore {
  return {
    async load () {
      try {
        return JSON.parse(await readFile(path, 'utf8')) as PeerTableSnapshot
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
        throw err
      }
    },
    async save (snapshot) {
      await mkdir(dirname(path), { recursive: true })
      const tmp = `${path}.${process.pid}.tmp`
      await writeFile(tmp, JSON.stringify(snapshot), { mode: 0o600 })
      await rename(tmp, path)
    }
  }
}
