import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { type Importer, runRelayCli, STORE_PACKAGES, type StoreKind } from '../src/index.js'

const natsUrl = process.env.TXBOX_NATS_URL
const required = process.env.TXBOX_REQUIRE_ALL === '1'
const dir = mkdtempSync(join(tmpdir(), 'txbox-relay-startup-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Port 1 on loopback: nothing listens there, so every connection is refused at once. */
const NOWHERE = '127.0.0.1:1'

/** One in-process relay with its log, stopped through its signal as SIGTERM would. */
const startRelay = (argv: string[], importer?: Importer) => {
  const lines: string[] = []
  const stop = new AbortController()
  const exit = runRelayCli([...argv, '--http-port', '0', '--log-level', 'debug'], {
    env: {},
    stderr: { write: (text: string) => lines.push(text) },
    signal: stop.signal,
    ...(importer ? { importer } : {}),
  })
  const log = () => lines.join('')
  const entries = () =>
    log()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
  const waitFor = async (
    match: (entry: Record<string, unknown>) => boolean,
    deadlineMs = 30_000,
  ): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + deadlineMs
    for (;;) {
      const found = entries().find(match)
      if (found) return found
      if (Date.now() > deadline) throw new Error(`no such log line within ${deadlineMs} ms:\n${log()}`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }
  const get = async (path: string) => {
    const { port } = await waitFor((entry) => entry.msg === 'http listening', 5_000)
    const response = await fetch(`http://127.0.0.1:${port}${path}`)
    return { status: response.status, body: (await response.text()) as string }
  }
  /** Stops it and returns the exit code and how long the stop took. */
  const stopNow = async () => {
    const started = performance.now()
    stop.abort()
    const code = await exit
    return { code, ms: performance.now() - started }
  }
  return { exit, log, waitFor, get, stopNow }
}

const unreachable: { kind: Exclude<StoreKind, 'sqlite'>; url: string }[] = [
  { kind: 'postgres', url: `postgres://app:s3cret@${NOWHERE}/app` },
  { kind: 'mysql', url: `mysql://app:s3cret@${NOWHERE}/app` },
  { kind: 'mongodb', url: `mongodb://app:s3cret@${NOWHERE}/app` },
  { kind: 'redis', url: `redis://:s3cret@${NOWHERE}/0` },
  { kind: 'dynamodb', url: `http://${NOWHERE}` },
]

describe('txbox-relay start-up while a server is not reachable', () => {
  it.each(unreachable)(
    '$kind: logs every failed attempt with the reason and the redacted URL, serves /health 503 with the reason from the first second, /live 200, /ready 503, and stops at once',
    async ({ kind, url }) => {
      const relay = startRelay(['--store', kind, '--url', url, '--nats', `nats://${NOWHERE}`])
      // The port is open before the store was ever reached.
      const early = await relay.get('/health')
      expect(early.status).toBe(503)
      expect(JSON.parse(early.body)).toMatchObject({
        alive: true,
        ready: false,
        phase: 'connecting to the store',
      })
      const first = await relay.waitFor((entry) => entry.msg === 'store not reachable; retrying')
      expect(first).toMatchObject({ level: 'warn', store: kind, attempt: 1 })
      expect(first.url).toBe(url.replace(':s3cret@', ':***@'))
      expect(String(first.error).length).toBeGreaterThan(0)
      // And it keeps trying (the first delay is 250 ms at most).
      await relay.waitFor((entry) => entry.msg === 'store not reachable; retrying' && entry.attempt === 2)
      const ready = await relay.get('/ready')
      expect(ready.status).toBe(503)
      expect(JSON.parse(ready.body)).toMatchObject({ ready: false, phase: 'connecting to the store' })
      expect(JSON.parse(ready.body).reason).toContain('not reachable')
      expect((await relay.get('/metrics')).status).toBe(503)
      const health = await relay.get('/health')
      expect(health.status).toBe(503)
      expect(JSON.parse(health.body).reason).toContain('not reachable')
      expect((await relay.get('/live')).status).toBe(200)
      const { code, ms } = await relay.stopNow()
      expect(code).toBe(0)
      expect(ms).toBeLessThan(3_000)
      expect(relay.log()).not.toContain('s3cret')
      expect(relay.log()).toContain('"stopped before the relay ran"')
    },
    60_000,
  )

  it('waits for NATS the same way once the store answers', async () => {
    const relay = startRelay([
      '--store',
      'sqlite',
      '--url',
      join(dir, 'nats-down.db'),
      '--migrate',
      '--nats',
      `nats://relay:s3cret@${NOWHERE},nats://127.0.0.1:2`,
    ])
    const failure = await relay.waitFor((entry) => entry.msg === 'NATS not reachable; retrying')
    expect(failure.nats).toEqual([`nats://relay:***@${NOWHERE}`, 'nats://127.0.0.1:2'])
    await relay.waitFor((entry) => entry.msg === 'NATS not reachable; retrying' && entry.attempt === 2)
    const ready = await relay.get('/ready')
    expect(ready.status).toBe(503)
    expect(JSON.parse(ready.body)).toMatchObject({ ready: false, phase: 'connecting to NATS' })
    expect(JSON.parse(ready.body).reason).toMatch(/^NATS at .* not reachable: /)
    const health = await relay.get('/health')
    expect(health.status).toBe(503)
    expect(JSON.parse(health.body)).toMatchObject({ alive: true, phase: 'connecting to NATS' })
    expect(JSON.parse(health.body).reason).toMatch(/^NATS at .* not reachable: /)
    const { code, ms } = await relay.stopNow()
    expect(code).toBe(0)
    expect(ms).toBeLessThan(3_000)
    expect(relay.log()).not.toContain('s3cret')
  })

  it.skipIf(!natsUrl && !required)(
    `turns /ready to 200 once the store and NATS answered and the loop runs${natsUrl ? '' : ' (missing: TXBOX_NATS_URL)'}`,
    async () => {
      if (!natsUrl) throw new Error('TXBOX_REQUIRE_ALL=1 but TXBOX_NATS_URL is not set')
      const relay = startRelay([
        '--store',
        'sqlite',
        '--url',
        join(dir, 'ready.db'),
        '--migrate',
        '--nats',
        natsUrl,
      ])
      await relay.waitFor((entry) => entry.msg === 'relay started')
      const ready = await relay.get('/ready')
      expect(ready.status, ready.body).toBe(200)
      expect(JSON.parse(ready.body)).toMatchObject({ ready: true, phase: 'running', store: { ok: true } })
      const health = await relay.get('/health')
      expect(health.status).toBe(200)
      expect(JSON.parse(health.body)).toMatchObject({ alive: true, ready: true, phase: 'running' })
      expect((await relay.stopNow()).code).toBe(0)
    },
  )
})

/** An importer that behaves like Node when `missing` is not installed. */
const without =
  (missing: string): Importer =>
  async (specifier) => {
    if (specifier === missing || specifier.startsWith(`${missing}/`))
      throw Object.assign(
        new Error(`Cannot find package '${missing}' imported from /app/node_modules/x.js`),
        {
          code: 'ERR_MODULE_NOT_FOUND',
        },
      )
    return import(specifier)
  }

const storeKinds = Object.keys(STORE_PACKAGES) as StoreKind[]
const urlFor: Record<StoreKind, string> = {
  sqlite: join(dir, 'missing.db'),
  postgres: `postgres://${NOWHERE}/app`,
  mysql: `mysql://${NOWHERE}/app`,
  mongodb: `mongodb://${NOWHERE}/app`,
  redis: `redis://${NOWHERE}`,
  dynamodb: `http://${NOWHERE}`,
}

describe('txbox-relay says which packages to install', () => {
  it.each(storeKinds.flatMap((kind) => STORE_PACKAGES[kind].map((missing) => ({ kind, missing }))))(
    '--store $kind without $missing: exit 2 and the npm command',
    async ({ kind, missing }) => {
      const stderr: string[] = []
      const code = await runRelayCli(
        ['--store', kind, '--url', urlFor[kind], '--nats', `nats://${NOWHERE}`],
        {
          env: {},
          stderr: { write: (text: string) => stderr.push(text) },
          importer: without(missing),
        },
      )
      expect(code).toBe(2)
      expect(stderr.join('')).toContain(
        `[txbox] [relay] --store ${kind} needs ${STORE_PACKAGES[kind].join(' and ')}, and "${missing}" is not installed: npm i ${STORE_PACKAGES[kind].join(' ')}`,
      )
    },
  )

  it('without nats: exit 2 and npm i nats', async () => {
    const stderr: string[] = []
    const code = await runRelayCli(['--store', 'sqlite', '--url', urlFor.sqlite], {
      env: {},
      stderr: { write: (text: string) => stderr.push(text) },
      importer: without('nats'),
    })
    expect(code).toBe(2)
    expect(stderr.join('')).toContain('is not installed: npm i nats')
  })
})

describe('txbox-relay exits 2 when the driver itself refuses the configuration', () => {
  it.each([
    ['mongodb', 'mongodb://[bad', 'the mongodb store refused --url "mongodb://[bad"'],
    [
      'sqlite',
      join(dir, 'no-such-dir', 'x.db'),
      `the sqlite store refused --url ${JSON.stringify(join(dir, 'no-such-dir', 'x.db'))}: [txbox] [sqlite] cannot open the database file`,
    ],
    ['postgres', `postgres://${NOWHERE}/app`, 'the postgres store refused --prefix "no spaces allowed"'],
  ])('%s %s', async (kind, url, message) => {
    const stderr: string[] = []
    const argv = ['--store', kind, '--url', url, '--nats', `nats://${NOWHERE}`]
    if (kind === 'postgres') argv.push('--prefix', 'no spaces allowed')
    const code = await runRelayCli(argv, { env: {}, stderr: { write: (text: string) => stderr.push(text) } })
    expect(code).toBe(2)
    expect(stderr.join('')).toContain(`[txbox] [relay] ${message}`)
  })
})
