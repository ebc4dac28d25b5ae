export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip'

/** One line of `centerctl doctor`; `ok` is false only for a failure. */
export interface Check {
  check: string
  ok: boolean
  status: CheckStatus
  detail: string
  fix: string | null
}

export const check = (name: string, status: CheckStatus, detail: string, fix: string | null = null): Check =>
  ({ check: name, ok: status !== 'fail', status, detail, fix })
