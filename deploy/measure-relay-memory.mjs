#!/usr/bin/env node
// Measures the memory of one txbox-relay process (the built bin) draining a PostgreSQL
// outbox backlog to a private nats-server: peak RSS (VmHWM) and RSS once drained, for the
// container resources in deploy/kubernetes/ (docs/DEPLOY.md gives the figures).
//
//   pnpm turbo run build --filter=@txbox/relay...
//   eval "$(bash scripts/services.sh env --export)"
//   node deploy/measure-relay-memory.mjs [events=50000] [payloadBytes=1024] [batchSize=100]
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const { openStore } = await import(join(root, 'packages/relay/dist/index.js'))
const pg = createRequire(join(root, 'packages/relay/package.json'))('pg')
const [events = 50_000, payloadBytes = 1024, batchSize = 100] = process.argv.slice(2).map(Number)
const url = process.env.TXBOX_POSTGRES_URL
if (!url) throw new Error('TXBOX_POSTGRES_URL is not set (eval "$(bash scripts/services.sh env --export)")')

const freePort = () =>
  new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const kib = (pid, field) => {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return match ? Number(match[1]) : 0
}

const dir = mkdtempSync(join(tmpdir(), 'txbox-relay-memory-'))
const schema = `relay_memory_${process.pid}`
const natsPort = await freePort()
const nats = spawn(
  'nats-server',
  ['-js', '-sd', join(dir, 'js'), '-a', '127.0.0.1', '-p', String(natsPort)],
  {
    stdio: 'ignore',
  },
)
let relay
try {
  await sleep(1_000)
  const store = await openStore({ kind: 'postgres', url, schema, migrate: true })
  const pad = 'x'.repeat(Math.max(0, payloadBytes - 30))
  for (let start = 0; start < events; start += 1_000) {
    const chunk = []
    for (let index = start; index < Math.min(events, start + 1_000); index++)
      chunk.push({
        eventId: `mem-${index}`,
        subject: 'memory.created',
        payload: JSON.stringify({ index, pad }),
      })
    await store.outbox.findOrCreateMany(chunk)
  }
  relay = spawn(
    process.execPath,
    [
      join(root, 'packages/relay/bin/txbox-relay.js'),
      '--store',
      'postgres',
      '--url',
      url,
      '--schema',
      schema,
      '--nats',
      `nats://127.0.0.1:${natsPort}`,
      '--stream',
      'MEMORY',
      '--stream-subjects',
      'memory.>',
      '--batch-size',
      String(batchSize),
      '--log-level',
      'warn',
      '--http-port',
      '0',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  )
  const started = Date.now()
  let idleRss = 0
  for (;;) {
    await sleep(100)
    const counts = await store.outbox.getCountByStatus()
    if (counts.sent === events) break
    if (idleRss === 0 && counts.sent === 0) idleRss = kib(relay.pid, 'VmRSS')
    if (Date.now() - started > 600_000)
      throw new Error(`not drained after 10 minutes: ${JSON.stringify(counts)}`)
  }
  const seconds = (Date.now() - started) / 1000
  await sleep(2_000)
  const result = {
    events,
    payloadBytes,
    batchSize,
    seconds: Math.round(seconds * 10) / 10,
    eventsPerSecond: Math.round(events / seconds),
    peakRssMiB: Math.round(kib(relay.pid, 'VmHWM') / 102.4) / 10,
    drainedRssMiB: Math.round(kib(relay.pid, 'VmRSS') / 102.4) / 10,
    node: process.version,
  }
  console.log(JSON.stringify(result))
  relay.kill('SIGTERM')
  await new Promise((resolve) => relay.once('exit', resolve))
  await store.close()
} finally {
  if (relay && relay.exitCode === null) relay.kill('SIGKILL')
  nats.kill('SIGTERM')
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
  await pool.end()
  rmSync(dir, { recursive: true, force: true })
}
