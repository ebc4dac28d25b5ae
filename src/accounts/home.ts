import { constants as C } from 'node:fs'
import { chmod, chown, lchown, lstat, mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { defineError } from '../errors.js'
import { checkUsernameSyntax } from './names.js'

/**
 * /center/users/NAME, the user's shared directory, with .ssh/authorized_keys.
 *
 * The user owns NAME and may put anything in it, including symlinks where we
 * expect .ssh or authorized_keys, while we run as root. So below NAME nothing
 * is opened by path: each directory is opened with O_NOFOLLOW|O_DIRECTORY,
 * and the next step goes through `/proc/self/fd/N/child`, which resolves to
 * the directory we already hold (openat semantics) whatever was swapped in
 * meanwhile; the last component is again opened with O_NOFOLLOW.
 */

export const UnsafeHomeError = defineError('UnsafeHomeError', 'unsafe-home', 'the user directory is not safe to use')

const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW
/** an authorized_keys file larger than this is not read (32 keys of 16 KiB fit) */
export const AUTHORIZED_KEYS_MAX = 1024 * 1024
const TMP_NAME = '.authorized_keys.center-tmp'

export interface HomeInit {
  /** the /center root */
  root: string
}

export const usersDir = (root: string): string => join(root, 'users')

const at = (dir: FileHandle, child: string): string => `/proc/self/fd/${dir.fd}/${child}`

async function openDir (path: string): Promise<FileHandle> {
  try {
    return await open(path, DIR_FLAGS)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ELOOP' || code === 'ENOTDIR') throw new UnsafeHomeError(`${path} is a symlink or not a directory; refusing to follow it`)
    throw err
  }
}

async function existsNoFollow (path: string): Promise<boolean> {
  try { await lstat(path); return true } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}

async function nonEmptyNoFollow (path: string): Promise<boolean> {
  try { return (await lstat(path)).size > 0 } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}

/** The users/ directory itself belongs to root; make it if missing, refuse a symlink. */
async function openUsersDir (root: string): Promise<FileHandle> {
  await mkdir(usersDir(root), { recursive: true, mode: 0o755 })
  return await openDir(usersDir(root))
}

export interface EnsureHomeOptions {
  /** rewrite authorized_keys even if it exists (a new claim won the name) */
  rewriteKeys?: boolean
}

/**
 * Create /center/users/NAME (0755) and NAME/.ssh (0700) owned by uid:uid,
 * and write .ssh/authorized_keys (0600, uid:uid) if it is missing or
 * `rewriteKeys`. An existing NAME is re-owned to uid (a renumbering).
 * Returns whether authorized_keys was written.
 */
export async function ensureHome (init: HomeInit, name: string, uid: number, keys: readonly string[], opts: EnsureHomeOptions = {}): Promise<boolean> {
  checkUsernameSyntax(name)
  if (await makeFresh(init, name, uid, keys)) return true
  const users = await openUsersDir(init.root)
  try {
    const home = await openOrMakeDir(users, name, 0o755, uid)
    try {
      const ssh = await openOrMakeDir(home, '.ssh', 0o700, uid)
      try {
        // an empty file is what a crash right after creating it leaves: write it again
        if (opts.rewriteKeys !== true && await nonEmptyNoFollow(at(ssh, 'authorized_keys'))) return false
        await writeKeys(ssh, keys, uid)
        return true
      } finally { await ssh.close() }
    } finally { await home.close() }
  } finally { await users.close() }
}

/**
 * A home that does not exist yet is built by path: until the last chown
 * everything in it belongs to root, so the user cannot have planted a
 * symlink. About half the system calls of the general path (backfill speed).
 */
async function makeFresh (init: HomeInit, name: string, uid: number, keys: readonly string[]): Promise<boolean> {
  const home = join(usersDir(init.root), name)
  try {
    await mkdir(home, { mode: 0o755 })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') return false
    if (code !== 'ENOENT') throw err
    await mkdir(usersDir(init.root), { recursive: true, mode: 0o755 })
    return await makeFresh(init, name, uid, keys)
  }
  const ssh = join(home, '.ssh')
  await mkdir(ssh, { mode: 0o700 })
  const f = await open(join(ssh, 'authorized_keys'), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600)
  try {
    await f.writeFile(keys.map((k) => `${k}\n`).join(''))
    await f.chown(uid, uid)
  } finally { await f.close() }
  // the umask may have narrowed 0755; 0700 and 0600 it cannot widen
  if ((process.umask() & 0o055) !== 0) await chmod(home, 0o755)
  await chown(ssh, uid, uid)
  await chown(home, uid, uid)
  return true
}

async function openOrMakeDir (parent: FileHandle, child: string, mode: number, uid: number): Promise<FileHandle> {
  let made = true
  try {
    await mkdir(at(parent, child), { mode })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    made = false
  }
  const dir = await openDir(at(parent, child))
  const st = await dir.stat()
  if (st.uid !== uid || st.gid !== uid) await dir.chown(uid, uid)
  // mkdir's mode went through the umask; an existing directory keeps the mode its user chose
  if (made) await dir.chmod(mode)
  return dir
}

async function writeKeys (ssh: FileHandle, keys: readonly string[], uid: number): Promise<void> {
  await rm(at(ssh, TMP_NAME), { force: true })
  const f = await open(at(ssh, TMP_NAME), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600)
  try {
    await f.writeFile(keys.map((k) => `${k}\n`).join(''))
    await f.chown(uid, uid)
    await f.chmod(0o600)
  } finally { await f.close() }
  // rename replaces a symlink named authorized_keys itself, never its target
  await rename(at(ssh, TMP_NAME), at(ssh, 'authorized_keys'))
}

/** Whether /center/users/NAME exists (as anything: a symlink there counts). */
export async function homeExists (init: HomeInit, name: string): Promise<boolean> {
  checkUsernameSyntax(name)
  return await existsNoFollow(join(usersDir(init.root), name))
}

/** Remove /center/users/NAME and everything in it (symlinks are removed, not followed). */
export async function removeHome (init: HomeInit, name: string): Promise<boolean> {
  checkUsernameSyntax(name)
  const path = join(usersDir(init.root), name)
  if (!(await existsNoFollow(path))) return false
  await rm(path, { recursive: true, force: true })
  return true
}

/** After a renumbering: give every file under NAME owned by `from` to `to` (lchown, no symlink followed). */
export async function rechownHome (init: HomeInit, name: string, from: number, to: number): Promise<number> {
  checkUsernameSyntax(name)
  let n = 0
  const walk = async (path: string): Promise<void> => {
    const st = await lstat(path)
    if (st.uid === from || st.gid === from) {
      await lchown(path, st.uid === from ? to : st.uid, st.gid === from ? to : st.gid)
      n++
    }
    if (st.isDirectory()) for (const e of await readdir(path)) await walk(join(path, e))
  }
  const top = join(usersDir(init.root), name)
  if (await existsNoFollow(top)) await walk(top)
  return n
}

/**
 * Read NAME/.ssh/authorized_keys for sshd, never following a symlink below
 * users/ and only if NAME, .ssh and the file belong to `uid` (or root) and
 * are not writable by group or others. Throws UnsafeHomeError otherwise.
 */
export async function readAuthorizedKeys (init: HomeInit, name: string, uid: number): Promise<string> {
  checkUsernameSyntax(name)
  const users = await openDir(usersDir(init.root))
  const handles: FileHandle[] = [users]
  try {
    const home = await openDir(at(users, name))
    handles.push(home)
    await checkOwner(home, `${name}`, uid, true)
    const ssh = await openDir(at(home, '.ssh'))
    handles.push(ssh)
    await checkOwner(ssh, `${name}/.ssh`, uid, false)
    let f: FileHandle
    try {
      f = await open(at(ssh, 'authorized_keys'), C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new UnsafeHomeError(`${name}/.ssh/authorized_keys is a symlink; refusing to follow it`)
      throw err
    }
    handles.push(f)
    const st = await f.stat()
    if (!st.isFile()) throw new UnsafeHomeError(`${name}/.ssh/authorized_keys is not a regular file`)
    // the file itself must be the user's: a root-owned file there is a hard link to something else
    await checkOwner(f, `${name}/.ssh/authorized_keys`, uid, false, false)
    if (st.size > AUTHORIZED_KEYS_MAX) throw new UnsafeHomeError(`${name}/.ssh/authorized_keys is larger than ${AUTHORIZED_KEYS_MAX} bytes`)
    const buf = Buffer.alloc(Math.min(st.size, AUTHORIZED_KEYS_MAX))
    const { bytesRead } = await f.read(buf, 0, buf.length, 0)
    return buf.subarray(0, bytesRead).toString('utf8')
  } finally {
    for (const h of handles.reverse()) await h.close().catch(() => {})
  }
}

async function checkOwner (h: FileHandle, what: string, uid: number, groupWritableOk: boolean, rootOk = true): Promise<void> {
  const st = await h.stat()
  if (st.uid !== uid && !(rootOk && st.uid === 0)) throw new UnsafeHomeError(`${what} belongs to uid ${st.uid}, not to the user (${uid})`)
  const bad = groupWritableOk ? 0o002 : 0o022
  if ((st.mode & bad) !== 0) throw new UnsafeHomeError(`${what} is writable by ${groupWritableOk ? 'others' : 'group or others'}`)
}
