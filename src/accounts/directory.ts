import { Attribute, Change, Client, AlreadyExistsError, NoSuchObjectError, NoSuchAttributeError, type Entry } from 'ldapts'
import type { Logger } from '../logger.js'
import { ConflictError, NotFoundError } from '../errors.js'
import { UidCollisionError } from './errors.js'
import { escapeDnValue, escapeFilterValue } from './ldap-escape.js'
import { inTransaction } from './ldap-txn.js'
import { checkGecos, checkShell, checkUsername, readLocalAccounts, type LocalAccountsReader } from './names.js'
import { parseSshPublicKeys } from './keys.js'
import { inUidSpace } from './uid.js'

/**
 * The accounts directory: one posixAccount (+ inetOrgPerson, ldapPublicKey)
 * per user under ou=people and a posixGroup of the same name and number under
 * ou=groups. Every call opens its own TLS connection, binds, works and
 * unbinds: simple, and nothing to leak or reconnect.
 */

export interface LdapDirectoryInit {
  /** ldaps://host:port, or ldap://host:port with startTls */
  url: string
  baseDn: string
  bindDn: string
  bindPassword: string
  /** PEM of the CA that signed the server's certificate; replaces the system trust store (omit to use the system CAs) */
  ca?: string | Buffer
  /** @default false */
  startTls?: boolean
  /** @default 'ou=people' */
  peopleRdn?: string
  /** @default 'ou=groups' */
  groupsRdn?: string
  /** @default '/home' */
  homeBase?: string
  /** @default 5000 */
  timeoutMs?: number
}

export interface LdapDirectoryComponents {
  logger: Logger
  /** this box's users and groups; @default reads /etc/passwd and /etc/group */
  localAccounts?: LocalAccountsReader
}

export interface NewUser {
  name: string
  uidNumber: number
  gecos: string
  shell: string
  keys: string[]
}

export interface User extends NewUser {
  homeDirectory: string
  locked: boolean
}

/** ppolicy's value for "locked by an administrator, not by failed binds" */
export const ADMIN_LOCK_TIME = '000001010000Z'

const USER_ATTRS = ['uid', 'uidNumber', 'gidNumber', 'cn', 'gecos', 'loginShell', 'homeDirectory', 'sshPublicKey', 'pwdAccountLockedTime']

function first (e: Entry, attr: string): string {
  const v = e[attr]
  const s = Array.isArray(v) ? v[0] : v
  return s === undefined ? '' : Buffer.isBuffer(s) ? s.toString('utf8') : String(s)
}

function all (e: Entry, attr: string): string[] {
  const v = e[attr]
  const list = v === undefined ? [] : Array.isArray(v) ? v : [v]
  return list.map((s) => (Buffer.isBuffer(s) ? s.toString('utf8') : String(s)))
}

function toUser (e: Entry): User {
  const name = first(e, 'uid')
  const cn = first(e, 'cn')
  return {
    name,
    uidNumber: Number(first(e, 'uidNumber')),
    gecos: cn === name && first(e, 'gecos') === '' ? '' : cn,
    shell: first(e, 'loginShell'),
    keys: all(e, 'sshPublicKey').sort(),
    homeDirectory: first(e, 'homeDirectory'),
    locked: first(e, 'pwdAccountLockedTime') !== ''
  }
}

function sameUser (a: NewUser, b: NewUser): boolean {
  return a.name === b.name && a.uidNumber === b.uidNumber && a.gecos === b.gecos && a.shell === b.shell &&
    JSON.stringify([...a.keys].sort()) === JSON.stringify([...b.keys].sort())
}

export class LdapDirectory {
  private readonly init: Required<Omit<LdapDirectoryInit, 'ca'>> & { ca?: string | Buffer }
  private readonly log: Logger
  private readonly localAccounts: LocalAccountsReader

  constructor (init: LdapDirectoryInit, components: LdapDirectoryComponents) {
    this.init = { startTls: false, peopleRdn: 'ou=people', groupsRdn: 'ou=groups', homeBase: '/home', timeoutMs: 5000, ...init }
    this.log = components.logger
    this.localAccounts = components.localAccounts ?? (() => readLocalAccounts())
  }

  get peopleDn (): string { return `${this.init.peopleRdn},${this.init.baseDn}` }
  get groupsDn (): string { return `${this.init.groupsRdn},${this.init.baseDn}` }
  userDn (name: string): string { return `uid=${escapeDnValue(name)},${this.peopleDn}` }
  groupDn (name: string): string { return `cn=${escapeDnValue(name)},${this.groupsDn}` }

  /** Run `fn` on a fresh, bound connection; always unbinds. */
  async withClient<T> (fn: (c: Client) => Promise<T>): Promise<T> {
    const tlsOptions = { ...(this.init.ca === undefined ? {} : { ca: [this.init.ca] }), minVersion: 'TLSv1.2' as const }
    const c = new Client({
      url: this.init.url,
      timeout: this.init.timeoutMs,
      connectTimeout: this.init.timeoutMs,
      ...(this.init.startTls ? {} : { tlsOptions })
    })
    try {
      if (this.init.startTls) await c.startTLS(tlsOptions)
      await c.bind(this.init.bindDn, this.init.bindPassword)
      return await fn(c)
    } finally {
      await c.unbind().catch(() => {})
    }
  }

  /** Validate everything about a new user; throws a named BadRequest subclass and writes nothing. */
  validate (u: NewUser): NewUser {
    checkUsername(u.name, this.localAccounts)
    checkGecos(u.gecos)
    checkShell(u.shell)
    if (!inUidSpace(u.uidNumber)) throw new UidCollisionError(`uidNumber ${String(u.uidNumber)} is outside the federation range`)
    const { users, groups } = this.localAccounts()
    if (users.some((l) => l.id === u.uidNumber) || groups.some((l) => l.id === u.uidNumber)) {
      throw new UidCollisionError(`uidNumber ${u.uidNumber} belongs to a local user or group on this box`)
    }
    const keys = parseSshPublicKeys(u.keys).map((k) => k.line)
    return { name: u.name, uidNumber: u.uidNumber, gecos: u.gecos, shell: u.shell, keys }
  }

  async getUser (name: string): Promise<User | null> {
    return await this.withClient(async (c) => await this.readUser(c, name))
  }

  private async readUser (c: Client, name: string): Promise<User | null> {
    const { searchEntries } = await c.search(this.peopleDn, {
      scope: 'one', filter: `(&(objectClass=posixAccount)(uid=${escapeFilterValue(name)}))`, attributes: USER_ATTRS
    })
    const e = searchEntries[0]
    return e === undefined ? null : toUser(e)
  }

  async listUsers (): Promise<User[]> {
    return await this.withClient(async (c) => {
      const { searchEntries } = await c.search(this.peopleDn, { scope: 'one', filter: '(objectClass=posixAccount)', attributes: USER_ATTRS, paged: true })
      return searchEntries.map(toUser).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    })
  }

  /** The names of every user entry and every group entry (a start-up comparison with the claim log). */
  async entryNames (): Promise<{ users: Set<string>, groups: Set<string> }> {
    return await this.withClient(async (c) => {
      const people = await c.search(this.peopleDn, { scope: 'one', filter: '(objectClass=posixAccount)', attributes: ['uid'], paged: true })
      const groups = await c.search(this.groupsDn, { scope: 'one', filter: '(objectClass=posixGroup)', attributes: ['cn'], paged: true })
      return { users: new Set(people.searchEntries.map((e) => first(e, 'uid'))), groups: new Set(groups.searchEntries.map((e) => first(e, 'cn'))) }
    })
  }

  /** Which name holds `uid` as a uidNumber or gidNumber, or null (for `allocateUid`). */
  async ownerOf (uid: number): Promise<string | null> {
    return await this.withClient(async (c) => await this.readOwner(c, uid))
  }

  private async readOwner (c: Client, uid: number): Promise<string | null> {
    const n = String(Math.trunc(uid))
    const users = await c.search(this.peopleDn, { scope: 'one', filter: `(uidNumber=${n})`, attributes: ['uid'] })
    const u = users.searchEntries[0]
    if (u !== undefined) return first(u, 'uid')
    const groups = await c.search(this.groupsDn, { scope: 'one', filter: `(gidNumber=${n})`, attributes: ['cn'] })
    const g = groups.searchEntries[0]
    return g === undefined ? null : first(g, 'cn')
  }

  private groupAttributes (u: NewUser): Record<string, string | string[]> {
    return { objectClass: ['top', 'posixGroup'], cn: u.name, gidNumber: String(u.uidNumber), memberUid: u.name }
  }

  private userAttributes (u: NewUser): Record<string, string | string[]> {
    const ascii = /^[\x20-\x7e]*$/.test(u.gecos)
    return {
      objectClass: ['top', 'inetOrgPerson', 'posixAccount', 'ldapPublicKey'],
      uid: u.name,
      cn: u.gecos === '' ? u.name : u.gecos,
      sn: u.name,
      uidNumber: String(u.uidNumber),
      gidNumber: String(u.uidNumber),
      homeDirectory: `${this.init.homeBase}/${u.name}`,
      loginShell: u.shell,
      // the gecos attribute is IA5 (ASCII); a UTF-8 real name lives in cn, which nslcd falls back to
      ...(u.gecos !== '' && ascii ? { gecos: u.gecos } : {}),
      ...(u.keys.length > 0 ? { sshPublicKey: u.keys } : {})
    }
  }

  /**
   * Add a user and their group. Adding an identical user again is a no-op
   * (returns false); a different user by that name, or another name holding
   * that number, is a ConflictError.
   */
  async addUser (input: NewUser): Promise<boolean> {
    const u = this.validate(input)
    return await this.withClient(async (c) => {
      const existing = await this.readUser(c, u.name)
      if (existing !== null) {
        if (sameUser(existing, u)) return false
        throw new ConflictError(`user "${u.name}" already exists with different attributes`, { detail: { name: u.name } })
      }
      const owner = await this.readOwner(c, u.uidNumber)
      if (owner !== null && owner !== u.name) throw new UidCollisionError(`uidNumber ${u.uidNumber} is already held by "${owner}"`)
      await this.addEntries(c, u)
      this.log.info({ user: u.name, uidNumber: u.uidNumber }, 'user added')
      return true
    })
  }

  private async addEntries (c: Client, u: NewUser): Promise<void> {
    try {
      await c.add(this.userDn(u.name), this.userAttributes(u))
    } catch (err) {
      if (err instanceof AlreadyExistsError) throw new ConflictError(`user "${u.name}" was added concurrently`, { cause: err })
      throw err
    }
    try {
      await c.add(this.groupDn(u.name), this.groupAttributes(u))
    } catch (err) {
      await c.del(this.userDn(u.name)).catch(() => {})
      if (err instanceof AlreadyExistsError) throw new ConflictError(`group "${u.name}" already exists`, { cause: err })
      throw err
    }
  }

  /**
   * Of `names`, those with neither a user nor a group entry: new to this
   * directory, so they can be added blind (a backfill page). One search per
   * 100 names in each of ou=people and ou=groups.
   */
  async absentWith (c: Client, names: string[]): Promise<Set<string>> {
    const absent = new Set(names)
    for (let i = 0; i < names.length; i += 100) {
      const chunk = names.slice(i, i + 100).map((n) => escapeFilterValue(n))
      const people = await c.search(this.peopleDn, { scope: 'one', filter: `(|${chunk.map((n) => `(uid=${n})`).join('')})`, attributes: ['uid'] })
      for (const e of people.searchEntries) absent.delete(first(e, 'uid'))
      const groups = await c.search(this.groupsDn, { scope: 'one', filter: `(|${chunk.map((n) => `(cn=${n})`).join('')})`, attributes: ['cn'] })
      for (const e of groups.searchEntries) absent.delete(first(e, 'cn'))
    }
    return absent
  }

  /**
   * Add new users and their groups in one LDAP transaction on a connection
   * of its own: all of them or none (any entry already there, or a slapd
   * without RFC 5805, fails the whole call and writes nothing). `users` must
   * have passed validate().
   */
  async addUsersInTransaction (users: NewUser[]): Promise<void> {
    if (users.length === 0) return
    await this.withClient(async (c) => {
      await inTransaction(c, async (control) => {
        await Promise.all(users.flatMap((u) => [
          c.add(this.userDn(u.name), this.userAttributes(u), control),
          c.add(this.groupDn(u.name), this.groupAttributes(u), control)
        ]))
      })
    })
  }

  /** Remove the user and their group; false if there was nothing to remove. */
  async deleteUser (name: string): Promise<boolean> {
    return await this.withClient(async (c) => {
      const gone = [await this.delIfThere(c, this.groupDn(name)), await this.delIfThere(c, this.userDn(name))]
      if (gone.some(Boolean)) this.log.info({ user: name }, 'user deleted')
      return gone.some(Boolean)
    })
  }

  private async delIfThere (c: Client, dn: string): Promise<boolean> {
    try {
      await c.del(dn)
      return true
    } catch (err) {
      if (err instanceof NoSuchObjectError) return false
      throw err
    }
  }

  /** Administrative lock (ppolicy): binds fail and the nslcd/AuthorizedKeysCommand filters hide the user. */
  async lock (name: string): Promise<void> {
    await this.withClient(async (c) => {
      await this.mustExist(c, name)
      await c.modify(this.userDn(name), new Change({ operation: 'replace', modification: new Attribute({ type: 'pwdAccountLockedTime', values: [ADMIN_LOCK_TIME] }) }))
    })
    this.log.info({ user: name }, 'user locked')
  }

  /**
   * Clear an administrative lock or a lockout from failed binds. Deleting
   * pwdAccountLockedTime is enough: ppolicy then drops pwdFailureTime itself
   * (which no one may modify directly). Unlocking an unlocked user is a no-op.
   */
  async unlock (name: string): Promise<void> {
    await this.withClient(async (c) => {
      await this.mustExist(c, name)
      try {
        await c.modify(this.userDn(name), new Change({ operation: 'delete', modification: new Attribute({ type: 'pwdAccountLockedTime' }) }))
      } catch (err) {
        if (!(err instanceof NoSuchAttributeError)) throw err
      }
    })
    this.log.info({ user: name }, 'user unlocked')
  }

  /**
   * Make the entry and group of `u` exactly this (add, or modify what
   * differs, including a new uidNumber), and its lock state `locked`. An
   * existing lock keeps its time (a ppolicy lockout stays one). Returns what
   * was done. `u` must have been validated.
   */
  async putUserWith (c: Client, u: NewUser, locked: boolean): Promise<{ action: 'added' | 'changed' | 'unchanged', before: User | null }> {
    const existing = await this.readUser(c, u.name)
    if (existing === null) {
      await this.addEntries(c, u)
      if (locked) await this.setLockWith(c, u.name, true)
      return { action: 'added', before: null }
    }
    const changes = this.diff(existing, u)
    if (changes.length > 0) await c.modify(this.userDn(u.name), changes)
    // also a group missing next to an existing entry (a crash between the two adds)
    if (existing.uidNumber !== u.uidNumber || !(await this.groupMatches(c, u))) await this.putGroup(c, u)
    if (existing.locked !== locked) await this.setLockWith(c, u.name, locked)
    return { action: changes.length > 0 || existing.locked !== locked ? 'changed' : 'unchanged', before: existing }
  }

  /** Read one user on an open connection. */
  async getUserWith (c: Client, name: string): Promise<User | null> { return await this.readUser(c, name) }

  private diff (cur: User, u: NewUser): Change[] {
    const want = this.userAttributes(u)
    const out: Change[] = []
    const replace = (type: string, values: string[]): void => { out.push(new Change({ operation: 'replace', modification: new Attribute({ type, values }) })) }
    if (cur.uidNumber !== u.uidNumber) { replace('uidNumber', [String(u.uidNumber)]); replace('gidNumber', [String(u.uidNumber)]) }
    if (cur.shell !== u.shell) replace('loginShell', [u.shell])
    if (cur.gecos !== u.gecos) { replace('cn', [want.cn as string]); replace('gecos', want.gecos === undefined ? [] : [want.gecos as string]) }
    if (JSON.stringify(cur.keys) !== JSON.stringify([...u.keys].sort())) replace('sshPublicKey', u.keys)
    return out
  }

  /**
   * The group entry read by its DN: a search by cn under ou=groups is only
   * as fast as slapd's cn index, and without one it reads every group.
   */
  private async groupMatches (c: Client, u: NewUser): Promise<boolean> {
    try {
      const { searchEntries } = await c.search(this.groupDn(u.name), { scope: 'base', filter: '(objectClass=posixGroup)', attributes: ['gidNumber'] })
      const g = searchEntries[0]
      return g !== undefined && first(g, 'gidNumber') === String(u.uidNumber)
    } catch (err) {
      if (err instanceof NoSuchObjectError) return false
      throw err
    }
  }

  private async putGroup (c: Client, u: NewUser): Promise<void> {
    try {
      await c.modify(this.groupDn(u.name), new Change({ operation: 'replace', modification: new Attribute({ type: 'gidNumber', values: [String(u.uidNumber)] }) }))
    } catch (err) {
      if (!(err instanceof NoSuchObjectError)) throw err
      await c.add(this.groupDn(u.name), this.groupAttributes(u))
    }
  }

  /** Remove a user and group on an open connection; false if neither was there. */
  async deleteUserWith (c: Client, name: string): Promise<boolean> {
    const gone = [await this.delIfThere(c, this.groupDn(name)), await this.delIfThere(c, this.userDn(name))]
    return gone.some(Boolean)
  }

  private async setLockWith (c: Client, name: string, locked: boolean): Promise<void> {
    if (locked) {
      await c.modify(this.userDn(name), new Change({ operation: 'replace', modification: new Attribute({ type: 'pwdAccountLockedTime', values: [ADMIN_LOCK_TIME] }) }))
      return
    }
    try {
      await c.modify(this.userDn(name), new Change({ operation: 'delete', modification: new Attribute({ type: 'pwdAccountLockedTime' }) }))
    } catch (err) {
      if (!(err instanceof NoSuchAttributeError)) throw err
    }
  }

  /** Every user with pwdAccountLockedTime set (an admin lock or a ppolicy lockout), name → that value. */
  async lockedUsers (): Promise<Map<string, string>> {
    return await this.withClient(async (c) => {
      const { searchEntries } = await c.search(this.peopleDn, {
        scope: 'one', filter: '(&(objectClass=posixAccount)(pwdAccountLockedTime=*))', attributes: ['uid', 'pwdAccountLockedTime'], paged: true
      })
      return new Map(searchEntries.map((e) => [first(e, 'uid'), first(e, 'pwdAccountLockedTime')]))
    })
  }

  async isLocked (name: string): Promise<boolean> {
    const u = await this.getUser(name)
    if (u === null) throw new NotFoundError(`no user "${name}"`)
    return u.locked
  }

  private async mustExist (c: Client, name: string): Promise<void> {
    if (await this.readUser(c, name) === null) throw new NotFoundError(`no user "${name}"`)
  }
}
