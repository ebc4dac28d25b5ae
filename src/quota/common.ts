import { chmod, chown, lstat, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { QuotaBackendError } from './errors.js'
import { assertId, assertSafePath, assertUserName } from './validate.js'

/** `<root>/users/<name>`, validated; the one place backends build this path. */
export function userPath (root: string, name: string): string {
  assertSafePath(root)
  assertUserName(name)
  return join(root, 'users', name)
}

/** `<root>/users` must be a real directory, not a symlink someone planted. */
export async function ensureUsersDir (root: string): Promise<string> {
  assertSafePath(root)
  const dir = join(root, 'users')
  await mkdir(dir, { recursive: true, mode: 0o755 })
  const st = await lstat(dir)
  if (!st.isDirectory()) throw new QuotaBackendError(`${dir} is not a directory`)
  return dir
}

/** Set owner and mode of a freshly made (or existing) user tree. */
export async function ownTree (dir: string, uid: number, gid: number): Promise<void> {
  assertId('uid', uid)
  assertId('gid', gid)
  const st = await lstat(dir)
  if (!st.isDirectory()) throw new QuotaBackendError(`${dir} exists and is not a directory`)
  await chown(dir, uid, gid)
  await chmod(dir, 0o755)
}

export async function exists (p: string): Promise<boolean> {
  try {
    await lstat(p)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}
