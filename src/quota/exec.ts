import { execFile } from 'node:child_process'
import { QuotaBackendError } from './errors.js'

export interface RunResult { stdout: string, stderr: string }

/**
 * Runs one external command with an argument array, never through a shell.
 * Backends take a `Runner` so tests can record the exact argv.
 */
export type Runner = (cmd: string, args: readonly string[]) => Promise<RunResult>

export const execRunner: Runner = async (cmd, args) => {
  return await new Promise((resolve, reject) => {
    execFile(cmd, [...args], { timeout: 60_000, maxBuffer: 4 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err !== null) {
        const msg = String(stderr).trim() || err.message
        reject(new QuotaBackendError(`${cmd} ${args.join(' ')} failed: ${msg}`, { cause: err, detail: { cmd, code: (err as NodeJS.ErrnoException).code } }))
        return
      }
      resolve({ stdout: String(stdout), stderr: String(stderr) })
    })
  })
}
