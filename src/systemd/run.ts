import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The installed package: /usr/lib/center in a standard install (dist/src/systemd/ is three levels down). */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')

export interface RunResult { code: number, stdout: string, stderr: string }

/** Run a program; never rejects. code is -1 when it could not be started. */
export async function run (cmd: string, args: string[], opts: { input?: string, env?: NodeJS.ProcessEnv, timeoutMs?: number } = {}): Promise<RunResult> {
  return await new Promise((resolve) => {
    const child = execFile(cmd, args, { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string }) | null
      const code = e === null ? 0 : typeof e.code === 'number' ? e.code : -1
      resolve({ code, stdout: String(stdout), stderr: e !== null && code === -1 ? `${String(stderr)}${e.message}` : String(stderr) })
    })
    if (opts.input !== undefined) child.stdin?.end(opts.input)
  })
}

/** Like run, but throws with the program's own words when it fails. */
export async function runOk (cmd: string, args: string[], opts: { input?: string, env?: NodeJS.ProcessEnv, timeoutMs?: number } = {}): Promise<string> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`)
  return r.stdout
}

/** True when systemd is PID 1 (sd_booted(3)). */
export function systemdRunning (): boolean {
  return existsSync('/run/systemd/system')
}

export interface Account { name: string, uid: number, gid: number, home: string }

/** A user from NSS (files, LDAP…), or null. */
export async function lookupUser (name: string): Promise<Account | null> {
  const r = await run('getent', ['passwd', name])
  const f = r.stdout.trim().split(':')
  if (r.code !== 0 || f.length < 7 || f[0] !== name) return null
  return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] as string }
}

export async function lookupGroup (name: string): Promise<number | null> {
  const r = await run('getent', ['group', name])
  const f = r.stdout.trim().split(':')
  return r.code !== 0 || f[0] !== name ? null : Number(f[2])
}
