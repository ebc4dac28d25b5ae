import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { connectService } from '../../src/sdk/index.js'
import { PeerProcess, createTestUser, joinPeers } from '../_util/peers.js'
import { sleep, waitFor } from '../_util/wait.js'

// Nothing is lost: 1,000 events from a service on A to a subscriber on B
// while B, then A, are killed with SIGKILL and restarted.
let a: PeerProcess
let b: PeerProcess
let user: Awaited<ReturnType<typeof createTestUser>>

before(async () => {
  user = await createTestUser()
  a = await PeerProcess.create({ name: 'crash-a' })
  b = await PeerProcess.create({ name: 'crash-b' })
  await a.start()
  await b.start()
  await joinPeers(a, b, user.name)
})

after(async () => {
  await a?.destroy()
  await b?.destroy()
  await user?.remove()
})

test('kill -9 of the receiver and then the sender loses nothing and duplicates nothing', async () => {
  const tx = await connectService({ socket: a.servicesSocket, token: (await a.ctl('service', 'add', 'load', '--send', 'load.item')).token })
  const rx = await connectService({ socket: b.servicesSocket, token: (await b.ctl('service', 'add', 'load', '--receive', 'load.item')).token })
  const got: number[] = []
  await rx.subscribe(['load.item'], (ev) => { got.push((ev.data as { i: number }).i) })
  const sends: Array<Promise<unknown>> = []
  try {
    for (let i = 0; i < 1000; i++) {
      sends.push(tx.send('load.item', { i, pad: 'x'.repeat(200) }, { to: b.uuid }))
      if (i % 50 === 49) await sleep(30)
      if (i === 299) {
        await b.kill()
        await b.start()
      }
      if (i === 649) {
        await a.kill()
        await a.start()
      }
    }
    await Promise.all(sends)
    await waitFor('all 1,000 events on B', () => got.length >= 1000, 60_000).catch(async (err: Error) => {
      // say what is missing and where it sits, so a failure here can be diagnosed from CI's output alone
      const missing = Array.from({ length: 1000 }, (_, i) => i).filter((i) => !got.includes(i))
      const [sa, sb] = await Promise.all([a.ctl('status').catch((e: Error) => e.message), b.ctl('status').catch((e: Error) => e.message)])
      throw new Error(`${err.message}; got ${got.length}, missing ${missing.length} from ${String(missing[0])}; A status ${JSON.stringify(sa)}; B status ${JSON.stringify(sb)}`)
    })
    await sleep(1000) // anything extra (a duplicate) would show up by now
    assert.equal(got.length, 1000, 'exactly 1,000 events')
    assert.deepEqual(got, Array.from({ length: 1000 }, (_, i) => i), 'in order, each once')
  } finally {
    await tx.close()
    await rx.close()
  }
})
