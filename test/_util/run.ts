import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface ExitResult { code: number, stdout: string, stderr: string }

/** Run a command and return its exit code and output, whatever the code (-1: killed or not started). */
export async function runExit (cmd: string, args: string[], timeoutMs = 30_000): Promise<ExitResult> {
  try {
    const { stdout, stderr } = await run(cmd, args, { timeout: timeoutMs })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code?: number, stdout?: string, stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}
