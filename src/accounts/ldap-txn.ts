import { Control, type Client } from 'ldapts'

/**
 * LDAP transactions (RFC 5805) as OpenLDAP 2.5's back-mdb implements them:
 * updates sent with the transaction specification control are queued by
 * slapd and applied in one database transaction at commit, all or nothing.
 * For a backfill that is one fsync per page instead of two per account.
 *
 * ldapts knows neither the control nor the end request's value, so both are
 * written here. OpenLDAP allows one transaction per connection and hands out
 * an empty transaction identifier; we send back whatever it gave us.
 */

const START_TXN = '1.3.6.1.1.21.1'
const END_TXN = '1.3.6.1.1.21.3'
const TXN_SPEC = '1.3.6.1.1.21.2'

/** BER length octets (short form below 128, long form above). */
function berLength (n: number): Buffer {
  if (n < 0x80) return Buffer.from([n])
  const bytes: number[] = []
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

const octetString = (b: Buffer): Buffer => Buffer.concat([Buffer.from([0x04]), berLength(b.length), b])

/** The transaction specification control: controlValue is the identifier itself (an OCTET STRING). */
class TxnSpecControl extends Control {
  constructor (private readonly id: Buffer) { super(TXN_SPEC, { critical: true }) }

  override writeControl (writer: { writeBuffer: (b: Buffer, tag: number) => void, writeByte: (b: number) => void }): void {
    if (this.id.length > 0) { writer.writeBuffer(this.id, 0x04); return }
    // the asn1 writer refuses an empty buffer: an empty OCTET STRING by hand
    writer.writeByte(0x04)
    writer.writeByte(0x00)
  }
}

/** txnEndReq ::= SEQUENCE { commit BOOLEAN DEFAULT TRUE, identifier OCTET STRING } */
function endRequest (id: Buffer, commit: boolean): Buffer {
  const body = Buffer.concat([...(commit ? [] : [Buffer.from([0x01, 0x01, 0x00])]), octetString(id)])
  return Buffer.concat([Buffer.from([0x30]), berLength(body.length), body])
}

/**
 * Run `queue(control)` inside a transaction on `c` and commit. `queue` sends
 * every update with `control` (and may send them concurrently); if anything
 * fails, the transaction is aborted and nothing was written. The connection
 * should be thrown away after a failure: slapd may drop it.
 */
export async function inTransaction (c: Client, queue: (control: Control) => Promise<void>): Promise<void> {
  const started = await c.exop(START_TXN)
  const id = typeof started.value === 'string' ? Buffer.from(started.value, 'latin1') : Buffer.from(started.value ?? [])
  const control = new TxnSpecControl(id)
  try {
    await queue(control)
  } catch (err) {
    await c.exop(END_TXN, endRequest(id, false)).catch(() => {})
    throw err
  }
  await c.exop(END_TXN, endRequest(id, true))
}
