/** How every command prints: a human line, or the data as JSON with --json. */
export interface Output {
  json: () => boolean
  print: (human: string, data: unknown) => void
}

export function makeOutput (json: () => boolean): Output {
  return {
    json,
    print: (human, data) => {
      process.stdout.write(json() ? JSON.stringify(data, null, 2) + '\n' : human.replace(/\n?$/, '\n'))
    }
  }
}

export function table (rows: Array<Record<string, unknown>>, cols: string[]): string {
  if (rows.length === 0) return '(none)'
  const cell = (v: unknown): string => (v === null || v === undefined ? '-' : v instanceof Date ? v.toISOString() : String(v))
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)))
  const line = (vals: string[]): string => vals.map((v, i) => v.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  return [line(cols.map((c) => c.toUpperCase())), ...rows.map((r) => line(cols.map((c) => cell(r[c]))))].join('\n')
}
