// A minimal center service: answers every `echo.ping` with an `echo.pong`
// sent back to the peer the ping came from.
//
//   centerctl service add echo --receive echo.ping --send echo.pong
//   CENTER_SERVICE_TOKEN=… node examples/echo-service.mjs
//
// In a project of your own, import from 'center/sdk' instead of the dist path.
import { connectService } from '../dist/src/sdk/index.js'

const socket = process.env.CENTER_SERVICES_SOCKET ?? '/run/center/services.sock'
const token = process.env.CENTER_SERVICE_TOKEN
if (token === undefined) {
  console.error('set CENTER_SERVICE_TOKEN to the token `centerctl service add` printed')
  process.exit(2)
}

const svc = await connectService({ socket, token })
console.log(`connected to ${socket}`)
// later reconnects (after a centerd restart) announce themselves here
svc.on('connected', (info) => { console.log(`connected as ${info.service} on peer ${info.peer}`) })
svc.on('disconnected', (err) => { console.log(`disconnected${err ? `: ${err.message}` : ''}`) })
svc.on('error', (err) => { console.error(`error: ${err.name} ${err.message}`) })

await svc.subscribe(['echo.ping'], async (ev) => {
  // the handler's promise settles before the next event: a slow send slows the stream, never reorders it
  const meta = await svc.send('echo.pong', { echo: ev.data, ping: ev.id }, { to: ev.meta.from })
  console.log(`pong to ${meta.to} (ping ${ev.id})`)
})
console.log('waiting for echo.ping')

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => { svc.close().then(() => { process.exitCode = 0 }) })
}
