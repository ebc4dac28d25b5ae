/**
 * Escaping for values we put into LDAP DNs (RFC 4514 §2.4) and search
 * filters (RFC 4515 §3). Validated names never need it; we escape anyway so
 * a validation bug cannot become an injection.
 */

/** Escape an attribute value for use inside a DN (e.g. `uid=<value>,ou=people,…`). */
export function escapeDnValue (value: string): string {
  let out = ''
  for (const ch of value) {
    if (ch === '\0') out += '\\00'
    else if ('"+,;<>\\='.includes(ch)) out += `\\${ch}`
    else out += ch
  }
  if (out.startsWith(' ') || out.startsWith('#')) out = `\\${out}`
  if (out.endsWith(' ') && !out.endsWith('\\ ')) out = `${out.slice(0, -1)}\\ `
  return out
}

/** Escape an assertion value for use inside a filter (e.g. `(uid=<value>)`). */
export function escapeFilterValue (value: string): string {
  let out = ''
  for (const b of Buffer.from(value, 'utf8')) {
    // * ( ) \ NUL, and every non-ASCII or control byte, as \XX
    if (b === 0x2a || b === 0x28 || b === 0x29 || b === 0x5c || b < 0x20 || b >= 0x7f) out += `\\${b.toString(16).padStart(2, '0')}`
    else out += String.fromCharCode(b)
  }
  return out
}
