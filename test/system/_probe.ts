import { connectService } from '../../src/sdk/index.js'

/**
 * A tiny service for the nspawn system test, run inside a container:
 *   node _probe.js recv SOCKET TOKEN NAME           prints the first NAME event as JSON, exits
 *   node _probe.js send SOCKET TOKEN NAME TO        sends one NAME event to peer TO
 *   node _probe.js sendn SOCKET TOKEN NAME TO TAG N sends N events {tag: TAG, i} to peer TO
 *   node _probe.js recvn SOCKET TOKEN NAME N        waits for N distinct tagged events, prints "TAG i" lines sorted, exits
 */
async function main (): Promise<void> {
  const [mode, socket, token, name, to, a5, a6] = process.argv.slice(2) as [string, string, string, string, string | undefined, string | undefined, string | undefined]
  const svc = await connectService({ socket, token })
  if (mode === 'recv') {
    await new Promise<void>((resolve, reject) => {
      svc.subscribe([name], (ev) => { process.stdout.write(JSON.stringify(ev) + '\n'); resolve() }).catch(reject)
    })
  } else if (mode === 'recvn') {
    const want = Number(to)
    const seen = new Set<string>()
    await new Promise<void>((resolve, reject) => {
      svc.subscribe([name], (ev) => {
        const d = ev.data as { tag?: string, i?: number } | null
        if (typeof d?.tag === 'string') seen.add(`${d.tag} ${String(d.i)}`)
        if (seen.size >= want) resolve()
      }).catch(reject)
    })
    process.stdout.write([...seen].sort().join('\n') + '\n')
  } else if (mode === 'sendn') {
    for (let i = 0; i < Number(a6); i++) await svc.send(name, { tag: a5, i }, { to: to ?? '*' })
    process.stdout.write(`sent ${String(a6)} ${String(a5)}\n`)
  } else {
    const meta = await svc.send(name, { hello: 'from a container', at: Date.now() }, { to: to ?? '*' })
    process.stdout.write(JSON.stringify(meta) + '\n')
  }
  await svc.close()
}

main().catch((err) => { process.stderr.write(`probe: ${(err as Error).message}\n`); process.exitCode = 1 })
