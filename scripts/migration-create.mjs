#!/usr/bin/env node
// npm run migration:create -- NAME  → sql/<ISO timestamp>-NAME.sql (frozen once released)
import { writeFileSync, existsSync } from 'node:fs'
const name = process.argv[2]
if (name === undefined || !/^[a-z0-9-]+$/.test(name)) {
  process.stderr.write('usage: npm run migration:create -- kebab-case-name\n')
  process.exit(2)
}
const ts = new Date().toISOString().replace(/[-:.]/g, '')
const path = new URL(`../sql/${ts}-${name}.sql`, import.meta.url)
if (existsSync(path)) process.exit(1)
writeFileSync(path, `-- ${name}\n-- Frozen once released: never edit a migration that has shipped.\n`)
process.stdout.write(`${path.pathname}\n`)
