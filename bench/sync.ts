import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chownSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync, closeSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ALICE_UID, SyncCluster, clusterUnsupported } from '../test/sync/_cluster.js'
import { sleep, waitFor } from '../test/_util/wait.js'

interface Result { name: string, value: number, unit: string, target?: string }

const run = promisify(execFile)

// /center live sync: write on A → visible on peers, beside Debian's lsyncd
// (default.rsyncssh, delay = 0) pushing the same kind of change over the
// same network link (the hosts are network namespaces, HARNESS.md §2).
const ITER = Number(process.env.SYNC_BENCH_ITER ?? 30)

const q = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(s.length * p) - 1))] as number
}

async function latency (write: (i: number) => string, visible: (i: number, content: string) => boolean): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < ITER; i++) {
    const t0 = performance.now()
    const content = write(i)
    await waitFor('the change to arrive', () => visible(i, content), 30_000, 2)
    out.push(performance.now() - t0)
    await sleep(100)
  }
  return out
}

function putAlice (cl: SyncCluster, rel: string, content: string | Buffer): void {
  const p = cl.path('a', join('users/alice', rel))
  writeFileSync(p, content)
  chownSync(p, ALICE_UID, ALICE_UID)
}

const readOr = (p: string): string | null => { try { return readFileSync(p, 'utf8') } catch { return null } }

async function linkBytes (cl: SyncCluster, host: string): Promise<number> {
  const out = await cl.net.exec(host, 'cat', '/sys/class/net/eth0/statistics/tx_bytes', '/sys/class/net/eth0/statistics/rx_bytes')
  return out.trim().split('\n').map(Number).reduce((a, b) => a + b, 0)
}

/** lsyncd on A pushing DIR to B over a plain sshd (root, key only) on port 2222 of B. */
async function startLsyncd (cl: SyncCluster): Promise<{ src: string, dst: string, stop: () => Promise<void> }> {
  const base = join(cl.base, 'lsyncd')
  mkdirSync(base, { recursive: true })
  const src = join(base, 'src')
  const dst = join(cl.host('b').root, '..', 'lsyncd-dst')
  mkdirSync(src, { recursive: true })
  mkdirSync(dst, { recursive: true })
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(base, 'key')])
  writeFileSync(join(base, 'authorized_keys'), readFileSync(join(base, 'key.pub')))
  const sshdConf = join(base, 'sshd_config')
  writeFileSync(sshdConf, [
    `ListenAddress ${cl.host('b').ip}`, 'Port 2222', `HostKey ${join(cl.base, 'b', 'hostkey')}`, `AuthorizedKeysFile ${join(base, 'authorized_keys')}`,
    'StrictModes no', 'UsePAM no', 'PermitRootLogin prohibit-password', 'PasswordAuthentication no', `PidFile ${join(base, 'sshd.pid')}`
  ].join('\n') + '\n')
  const w = cl.net.wrap('b', '/usr/sbin/sshd', ['-D', '-e', '-f', sshdConf])
  const sshd = spawn(w.cmd, w.args, { stdio: 'ignore' })
  const conf = join(base, 'lsyncd.conf.lua')
  writeFileSync(conf, `settings { logfile = "${join(base, 'lsyncd.log')}", statusFile = "${join(base, 'lsyncd.status')}", nodaemon = true, insist = true }
sync { default.rsyncssh, source = "${src}", host = "root@${cl.host('b').ip}", targetdir = "${dst}", delay = 0,
  rsync = { _extra = { "--modify-window=-1" } },
  ssh = { identityFile = "${join(base, 'key')}", port = 2222, options = { StrictHostKeyChecking = "no", UserKnownHostsFile = "/dev/null", BatchMode = "yes" } } }
`)
  await sleep(500)
  const lw = cl.net.wrap('a', 'lsyncd', [conf])
  const lsyncd: ChildProcess = spawn(lw.cmd, lw.args, { stdio: 'ignore' })
  // lsyncd starts with a full sync: wait until a first file arrives
  writeFileSync(join(src, 'ready'), 'ready')
  await waitFor('lsyncd to be up', () => existsSync(join(dst, 'ready')), 60_000, 50)
  return {
    src,
    dst,
    stop: async () => { lsyncd.kill('SIGTERM'); sshd.kill('SIGTERM'); await sleep(200) }
  }
}

export async function benchSync (): Promise<Result[]> {
  const why = clusterUnsupported()
  if (why !== null) { process.stdout.write(`sync bench skipped: ${why}\n`); return [] }
  if (!existsSync('/usr/bin/lsyncd')) {
    const { aptInstall } = await import('../test/_util/apt.js')
    aptInstall(['lsyncd'])
  }
  const results: Result[] = []
  // ---- A → one peer, and lsyncd over the same link
  {
    const cl = await SyncCluster.create(['a', 'b'])
    try {
      for (const n of ['a', 'b']) cl.makeUserTree(n)
      await cl.startAll()
      await sleep(2000)
      const ours = await latency((i) => { const c = `one ${i} ${randomBytes(8).toString('hex')}`; putAlice(cl, `lat-${i % 5}.txt`, c); return c },
        (i, c) => readOr(cl.path('b', `users/alice/lat-${i % 5}.txt`)) === c)
      results.push({ name: 'sync: write on A → visible on 1 peer, median', value: Math.round(q(ours, 0.5)), unit: 'ms' })
      results.push({ name: 'sync: write on A → visible on 1 peer, p95', value: Math.round(q(ours, 0.95)), unit: 'ms' })
      if (existsSync('/usr/bin/lsyncd')) {
        const ls = await startLsyncd(cl)
        try {
          const theirs = await latency((i) => { const c = `ls ${i} ${randomBytes(8).toString('hex')}`; writeFileSync(join(ls.src, `lat-${i % 5}.txt`), c); return c },
            (i, c) => readOr(join(ls.dst, `lat-${i % 5}.txt`)) === c)
          results.push({ name: 'lsyncd rsyncssh delay=0: same, median', value: Math.round(q(theirs, 0.5)), unit: 'ms' })
          results.push({ name: 'lsyncd rsyncssh delay=0: same, p95', value: Math.round(q(theirs, 0.95)), unit: 'ms' })
          results.push({ name: 'sync / lsyncd median latency', value: Number((q(ours, 0.5) / q(theirs, 0.5)).toFixed(2)), unit: 'x', target: '<= 1.2' })
        } finally { await ls.stop() }
      }
      // bytes on the wire (both directions on A's link) for a 1-byte change in a 1 MB file
      const big = randomBytes(1024 * 1024)
      putAlice(cl, 'big.bin', big)
      await waitFor('big.bin on B', () => existsSync(cl.path('b', 'users/alice/big.bin')) && readFileSync(cl.path('b', 'users/alice/big.bin')).equals(big), 30_000, 20)
      await sleep(1500)
      const before = await linkBytes(cl, 'a')
      const fd = openSync(cl.path('a', 'users/alice/big.bin'), 'r+')
      writeSync(fd, Buffer.from([big[500_000] as number ^ 0xff]), 0, 1, 500_000)
      closeSync(fd)
      big[500_000] = (big[500_000] as number) ^ 0xff
      await waitFor('the 1-byte change on B', () => readFileSync(cl.path('b', 'users/alice/big.bin')).equals(big), 30_000, 10)
      await sleep(1500)
      results.push({ name: 'bytes on the wire, 1-byte change in a 1 MB file', value: (await linkBytes(cl, 'a')) - before, unit: 'B', target: '<< 1048576' })
    } finally { await cl.destroy() }
  }
  // ---- A → three peers
  {
    const cl = await SyncCluster.create(['a', 'b', 'c', 'd'])
    try {
      for (const n of ['a', 'b', 'c', 'd']) cl.makeUserTree(n)
      await cl.startAll()
      await sleep(2000)
      const all = await latency((i) => { const c = `three ${i} ${randomBytes(8).toString('hex')}`; putAlice(cl, `lat-${i % 5}.txt`, c); return c },
        (i, c) => ['b', 'c', 'd'].every((n) => readOr(cl.path(n, `users/alice/lat-${i % 5}.txt`)) === c))
      results.push({ name: 'sync: write on A → visible on 3 peers, median', value: Math.round(q(all, 0.5)), unit: 'ms' })
      results.push({ name: 'sync: write on A → visible on 3 peers, p95', value: Math.round(q(all, 0.95)), unit: 'ms', target: '< 1000' })
    } finally { await cl.destroy() }
  }
  return results
}
