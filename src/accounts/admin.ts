import { BadRequestError, NotRunningError, defineError } from '../errors.js'
import type { AdminMethods } from '../admin/server.js'
import type { Accounts } from './index.js'
import type { AccountsService } from './service.js'

export const AccountsDisabledError = defineError('AccountsDisabledError', 'accounts-disabled', 'accounts are not provisioned on this peer')

const str = (p: Record<string, unknown>, k: string): string => {
  const v = p[k]
  if (typeof v !== 'string' || v === '') throw new BadRequestError(`parameter ${k} is required`)
  return v
}

const optStr = (p: Record<string, unknown>, k: string): string | undefined => {
  const v = p[k]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') throw new BadRequestError(`parameter ${k} must be a string`)
  return v
}

/** The `user.*` admin methods (centerctl user …). `get` returns null while the daemon is starting. */
export function accountAdminMethods (get: () => Accounts | null | undefined): AdminMethods {
  const svc = (): AccountsService => {
    const a = get()
    if (a === undefined) throw new NotRunningError('daemon is starting')
    if (a === null) throw new AccountsDisabledError('accounts are not provisioned on this peer: set [ldap] url in the config')
    if (a.service === null) throw new NotRunningError('the accounts service is not started')
    return a.service
  }
  return {
    'user.add': async (p) => {
      const keys = p.keys
      if (!Array.isArray(keys)) throw new BadRequestError('parameter keys must be a list of SSH public keys')
      return await svc().add({ name: str(p, 'name'), keys, gecos: optStr(p, 'gecos'), shell: optStr(p, 'shell') })
    },
    'user.lock': async (p) => await svc().lock(str(p, 'name'), true, optStr(p, 'reason') ?? ''),
    'user.unlock': async (p) => await svc().lock(str(p, 'name'), false, optStr(p, 'reason') ?? ''),
    'user.del': async (p) => await svc().del(str(p, 'name')),
    'user.ban': async (p) => {
      if (p.local !== true) throw new BadRequestError('only a local ban exists: pass --local (a ban for the whole network is a lock: `user lock`)')
      return await svc().ban(str(p, 'name'), optStr(p, 'reason') ?? '', p.unban !== true)
    },
    'user.list': async (p) => await svc().list(p.all === true),
    'user.show': async (p) => await svc().show(str(p, 'name')),
    'user.backfill': async () => await svc().backfillStatus(),
    'user.status': async () => await svc().status()
  }
}
