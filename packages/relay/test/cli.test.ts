import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { OutboxRelay } from '@txbox/core'
import { ensureStream } from '@txbox/core/nats'
import { connect } from 'nats'
import { describe, expect, it } from 'vitest'
import { envName, type Importer, parseConfig, runRelayCli } from '../src/index.js'
import { openStore, type StoreConfig, type StoreKind } from '../src/stores.js'
import { hostOf, LateProxy } from './tcp-proxy.js'

const natsUrl = process.env.TXBOX_NATS_URL
const required = process.env.TXBOX_REQUIRE_ALL === '1'
const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`

const packageVersion = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version

const sink = () => {
  const lines: string[] = []
  return { lines, write: (text: string) => lines.push(text) }
}

describe('txbox-relay configuration', () => {
  it('reads flags, falls back to TXBOX_RELAY_* variables, and lets a flag win', () => {
    const config = parseConfig(['--store', 'postgres', '--batch-size', '25', '--retention-days', 'off'], {
      [envName('url')]: 'postgres://db/app',
      [envName('batch-size')]: '999',
      TXBOX_RELAY_NATS: 'nats://a:4222, nats://b:4222',
      TXBOX_RELAY_MIGRATE: '1',
      TXBOX_RELAY_BACKOFF_JITTER: '0.5',
    })
    expect(config).toMatchObject({
      store: {
        kind: 'postgres',
        url: 'postgres://db/app',
        migrate: true,
        wakeup: true,
        preparedStatements: true,
      },
      natsServers: ['nats://a:4222', 'nats://b:4222'],
      batchSize: 25,
      backoff: { jitter: 0.5 },
      retention: { sentOlderThanDays: null },
    })
  })

  it('turns PostgreSQL prepared statements off for a pooler that cannot keep them', () => {
    const config = parseConfig(['--store', 'postgres', '--url', 'postgres://db/app'], {
      TXBOX_RELAY_PREPARED_STATEMENTS: 'off',
    })
    expect(config).toMatchObject({ store: { preparedStatements: false } })
  })

  it('exits 2 with the help on a usage error, 0 on --help and --version', async () => {
    for (const argv of [[], ['--store', 'oracle', '--url', 'x'], ['--store', 'sqlite'], ['--bogus']]) {
      const stderr = sink()
      expect(await runRelayCli(argv, { env: {}, stderr })).toBe(2)
      expect(stderr.lines.join('')).toContain('Usage: txbox-relay')
    }
    const stderr = sink()
    expect(
      await runRelayCli(['--store', 'sqlite', '--url', 'x.db', '--batch-size', '0'], { env: {}, stderr }),
    ).toBe(2)
    expect(stderr.lines.join('')).toContain('--batch-size must be an integer from 1 to 10000')
    const stdout = sink()
    expect(await runRelayCli(['--help'], { env: {}, stdout })).toBe(0)
    expect(stdout.lines.join('')).toContain('TXBOX_RELAY_BATCH_SIZE')
    const version = sink()
    expect(await runRelayCli(['--version'], { env: {}, stdout: version })).toBe(0)
    expect(version.lines.join('')).toBe(`${packageVersion}\n`)
  })

  it('exits 2 when the SQLite file cannot be opened: there is no server to wait for', async () => {
    const stderr = sink()
    const code = await runRelayCli(
      ['--store', 'sqlite', '--url', '/nonexistent/dir/x.db', '--nats', 'nats://127.0.0.1:1'],
      { env: {}, stderr },
    )
    expect(code).toBe(2)
    expect(stderr.lines.join('')).toContain(
      'the sqlite store refused --url "/nonexistent/dir/x.db": [txbox] [sqlite] cannot open the database file "/nonexistent/dir/x.db"',
    )
  })
})

/** The built bin, as a user runs it (build first: pnpm turbo run build --filter=@txbox/relay...). */
describe('the txbox-relay bin', () => {
  const bin = fileURLToPath(new URL('../bin/txbox-relay.js', import.meta.url))
  const run = (args: string[]) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { PATH: process.env.PATH ?? '' } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    return { child, exit, out: () => stdout, err: () => stderr }
  }

  it('prints its version', async () => {
    const relay = run(['--version'])
    expect(await relay.exit).toBe(0)
    expect(relay.out()).toBe(`${packageVersion}\n`)
  })

  it('exits 0 promptly on SIGTERM while NATS is still unreachable', async () => {
    const db = join(sqliteDir, 'bin.db')
    const relay = run(['--store', 'sqlite', '--url', db, '--migrate', '--nats', 'nats://127.0.0.1:1'])
    const deadline = Date.now() + 20_000
    while (!relay.err().includes('"NATS not reachable; retrying"')) {
      if (Date.now() > deadline || relay.child.exitCode !== null)
        throw new Error(`no retry logged:\n${relay.err()}`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    const started = performance.now()
    relay.child.kill('SIGTERM')
    expect(await relay.exit).toBe(0)
    expect(performance.now() - started).toBeLessThan(3_000)
    expect(relay.err()).toContain('"stopped before the relay ran"')
  }, 30_000)

  it('exits 2 at once on configuration that can never work', async () => {
    const relay = run(['--store', 'postgres', '--url', 'postgres://[bad'])
    expect(await relay.exit).toBe(2)
    expect(relay.err()).toContain('[txbox] [relay] --url "postgres://[bad" is not a valid URL')
  })
})

/** Each store: where it is, and how to remove the namespace the test created. */
interface StoreCase {
  kind: StoreKind
  url: string | undefined
  config: (url: string) => Omit<StoreConfig, 'kind' | 'url'>
  cleanup: (url: string) => Promise<void>
}

const name = `cli_${suffix}`
const sqliteDir = mkdtempSync(join(tmpdir(), 'txbox-relay-cli-'))
const cases: StoreCase[] = [
  {
    kind: 'sqlite',
    url: join(sqliteDir, 'outbox.db'),
    config: () => ({}),
    cleanup: async () => rmSync(sqliteDir, { recursive: true, force: true }),
  },
  {
    kind: 'postgres',
    url: process.env.TXBOX_POSTGRES_URL,
    config: () => ({ schema: name }),
    cleanup: async (url) => {
      const { default: pg } = await import('pg')
      const pool = new pg.Pool({ connectionString: url, max: 1 })
      await pool.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`)
      await pool.end()
    },
  },
  {
    kind: 'mysql',
    url: process.env.TXBOX_MYSQL_URL,
    config: () => ({ prefix: `${name}_` }),
    cleanup: async (url) => {
      const { createConnection } = await import('mysql2/promise')
      const connection = await createConnection({ uri: url })
      const [rows] = await connection.query(`SHOW TABLES LIKE '${name}\\_%'`)
      for (const row of rows as Record<string, string>[]) {
        const table = Object.values(row)[0]
        if (table) await connection.query(`DROP TABLE \`${table}\``)
      }
      await connection.end()
    },
  },
  {
    kind: 'mongodb',
    url: process.env.TXBOX_MONGODB_URL,
    config: () => ({ prefix: `${name}_` }),
    cleanup: async (url) => {
      const { MongoClient } = await import('mongodb')
      const client = new MongoClient(url)
      const db = client.db()
      for (const collection of await db.listCollections({ name: { $regex: `^${name}_` } }).toArray())
        await db.dropCollection(collection.name)
      await client.close()
    },
  },
  {
    kind: 'redis',
    url: process.env.TXBOX_REDIS_URL,
    config: () => ({ prefix: name }),
    cleanup: async (url) => {
      const { Redis } = await import('ioredis')
      const redis = new Redis(url)
      const keys = await redis.keys(`*${name}*`)
      if (keys.length > 0) await redis.del(...keys)
      await redis.quit()
    },
  },
  {
    kind: 'dynamodb',
    url: process.env.TXBOX_DYNAMODB_URL,
    config: () => ({ prefix: name }),
    cleanup: async (url) => {
      const { DeleteTableCommand, DynamoDBClient } = await import('@aws-sdk/client-dynamodb')
      const client = new DynamoDBClient({
        endpoint: url,
        region: 'us-east-1',
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      })
      await client.send(new DeleteTableCommand({ TableName: name })).catch(() => {})
      client.destroy()
    },
  },
]

describe.each(cases)('txbox-relay --store $kind', (store) => {
  const missing = [
    ...(natsUrl ? [] : ['TXBOX_NATS_URL']),
    ...(store.url ? [] : [`TXBOX_${store.kind.toUpperCase()}_URL`]),
  ]
  it.skipIf(missing.length > 0 && !required)(
    `waits for its store and NATS to come up, then publishes an enqueued event and exits 0 on stop${missing.length > 0 ? ` (missing: ${missing.join(', ')})` : ''}`,
    async () => {
      if (missing.length > 0) throw new Error(`TXBOX_REQUIRE_ALL=1 but missing ${missing.join(', ')}`)
      const url = store.url as string
      const stream = `CLI_${store.kind.toUpperCase()}_${suffix.toUpperCase()}`
      const subject = `cli${store.kind}${suffix}.created`
      const config: StoreConfig = { kind: store.kind, url, ...store.config(url), migrate: true }
      const producer = await openStore(config)
      const nc = await connect({ servers: natsUrl as string })
      const jsm = await nc.jetstreamManager()
      // The relay sees both servers only through ports that open after it started.
      const storeProxy = store.kind === 'sqlite' ? undefined : await LateProxy.to(hostOf(url))
      const natsProxy = await LateProxy.to(hostOf(natsUrl as string))
      try {
        await ensureStream(jsm, { name: stream, subjects: [`cli${store.kind}${suffix}.>`] })
        await producer.outbox.findOrCreate({
          eventId: `cli-${store.kind}-1`,
          subject,
          payload: '{"ok":true}',
          headers: '{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}',
        })
        const stop = new AbortController()
        let relay: OutboxRelay | undefined
        const stderr = sink()
        const argv = [
          '--store',
          store.kind,
          '--url',
          storeProxy ? storeProxy.rewrite(url) : url,
          '--nats',
          natsProxy.rewrite(natsUrl as string),
          '--poll-interval-ms',
          '50',
        ]
        if (config.prefix) argv.push('--prefix', config.prefix)
        if (config.schema) argv.push('--schema', config.schema)
        const exit = runRelayCli(argv, {
          env: {},
          stderr,
          signal: stop.signal,
          onReady: (running) => {
            relay = running
          },
        })
        const logged = async (text: string) => {
          const deadline = Date.now() + 30_000
          while (!stderr.lines.join('').includes(text)) {
            if (Date.now() > deadline) throw new Error(`never logged ${text}:\n${stderr.lines.join('')}`)
            await new Promise((resolve) => setTimeout(resolve, 25))
          }
        }
        if (storeProxy) {
          await logged('"msg":"store not reachable; retrying"')
          await storeProxy.open()
          await logged('"msg":"store reachable"')
        }
        await logged('"msg":"NATS not reachable; retrying"')
        expect(relay).toBeUndefined()
        await natsProxy.open()
        await logged('"msg":"NATS reachable"')
        const deadline = Date.now() + 20_000
        while (
          (await producer.outbox.get(`cli-${store.kind}-1`))?.status !== 'sent' &&
          Date.now() < deadline
        ) {
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
        stop.abort()
        expect(await exit, stderr.lines.join('')).toBe(0)
        expect(relay?.counters().published).toBe(1)
        expect((await producer.outbox.get(`cli-${store.kind}-1`))?.status).toBe('sent')
        const message = await jsm.streams.getMessage(stream, { last_by_subj: subject })
        expect(message.header.get('Nats-Msg-Id')).toBe(`cli-${store.kind}-1`)
        expect(stderr.lines.join('')).toContain('"relay stopped"')
      } finally {
        await storeProxy?.close()
        await natsProxy.close()
        await jsm.streams.delete(stream).catch(() => false)
        await nc.close()
        await producer.close()
        await store.cleanup(url)
      }
    },
    60_000,
  )
})

describe('txbox-relay event size bounds', () => {
  it.skipIf(!natsUrl && !required)(
    "takes the store's maxEventBytes unless --max-event-bytes is given, and connects to NATS without async traces",
    async () => {
      if (!natsUrl) throw new Error('TXBOX_REQUIRE_ALL=1 but missing TXBOX_NATS_URL')
      const dir = mkdtempSync(join(tmpdir(), 'txbox-relay-bytes-'))
      const url = join(dir, 'outbox.db')
      const { default: Database } = await import('better-sqlite3')
      const sqlite = await import('@txbox/sqlite')
      const natsModule = await import('nats')
      // The relay's store enforces 400 bytes; the producer's accepted more before (a legacy row).
      const storeLimit = 400
      const connectOptions: unknown[] = []
      const importer: Importer = async (specifier) => {
        if (specifier === '@txbox/sqlite')
          return {
            ...sqlite,
            connectSqlite: (path: string, options: Parameters<typeof sqlite.connectSqlite>[1]) =>
              sqlite.connectSqlite(path, { ...options, maxEventBytes: storeLimit }),
          }
        if (specifier === 'nats')
          return {
            ...natsModule,
            connect: (options: Parameters<typeof natsModule.connect>[0]) => {
              connectOptions.push(options)
              return natsModule.connect(options)
            },
          }
        return import(specifier)
      }
      const db = new Database(url)
      const producer = sqlite.createSqliteStore({ db, maxEventBytes: 100_000 })
      await producer.migrate()
      const subject = `bytes${suffix}.created`
      const stream = `BYTES_${suffix.toUpperCase()}`
      const nc = await connect({ servers: natsUrl })
      const jsm = await nc.jetstreamManager()
      const runUntil = async (argv: string[], done: () => Promise<boolean>) => {
        const stop = new AbortController()
        const stderr = sink()
        let relay: OutboxRelay | undefined
        const exit = runRelayCli(
          ['--store', 'sqlite', '--url', url, '--nats', natsUrl, '--poll-interval-ms', '20', ...argv],
          {
            env: {},
            stderr,
            signal: stop.signal,
            importer,
            onReady: (running) => {
              relay = running
            },
          },
        )
        const deadline = Date.now() + 20_000
        while (!(await done()) && Date.now() < deadline)
          await new Promise((resolve) => setTimeout(resolve, 25))
        stop.abort()
        expect(await exit, stderr.lines.join('')).toBe(0)
        return relay as OutboxRelay
      }
      const status = async (id: string) => (await producer.outbox.get(id))?.status
      try {
        await ensureStream(jsm, { name: stream, subjects: [`bytes${suffix}.>`] })
        await producer.outbox.findOrCreateMany([
          { eventId: 'big', subject, payload: 'x'.repeat(1_000) },
          { eventId: 'small', subject, payload: '{}' },
        ])

        const bounded = await runUntil([], async () => (await status('small')) === 'sent')
        await expect.poll(() => status('big')).toBe('failed')
        expect((await producer.outbox.get('big'))?.errorMessage).toContain(
          `over the relay's maxEventBytes of ${storeLimit}`,
        )
        expect((await bounded.metrics()).deadLettered).toEqual({ 'too-large': 1 })

        // The flag wins over the store's limit: the requeued legacy event is published.
        expect(await producer.outbox.requeueFailed(['big'])).toBe(1)
        await runUntil(['--max-event-bytes', '100000'], async () => (await status('big')) === 'sent')
        expect(await status('big')).toBe('sent')
        const published = await jsm.streams.getMessage(stream, { last_by_subj: subject })
        expect(published.header.get('Nats-Msg-Id')).toBe('big')
        expect(published.data.length).toBe(1_000)

        expect(connectOptions.length).toBeGreaterThanOrEqual(2)
        for (const options of connectOptions) expect(options).toMatchObject({ noAsyncTraces: true })
      } finally {
        await jsm.streams.delete(stream).catch(() => false)
        await nc.close()
        db.close()
        rmSync(dir, { recursive: true, force: true })
      }
    },
    60_000,
  )
})

/** `target` with `keyRuns` answered `false`, its methods bound to it (class private fields). */
const withoutKeyRuns = <T extends object>(target: T): T =>
  new Proxy(target, {
    get: (object, property) => {
      if (property === 'keyRuns') return false
      const value = Reflect.get(object, property, object)
      return typeof value === 'function' ? value.bind(object) : value
    },
  })

describe('txbox-relay --key-run', () => {
  it.skipIf(!natsUrl && !required)(
    'exits 2 naming the flag when the opened store does not take key runs',
    async () => {
      if (!natsUrl) throw new Error('TXBOX_REQUIRE_ALL=1 but missing TXBOX_NATS_URL')
      const dir = mkdtempSync(join(tmpdir(), 'txbox-relay-keyrun-'))
      const sqlite = await import('@txbox/sqlite')
      // The SQLite adapter declares key runs; this one is the same store saying it does not.
      const importer: Importer = async (specifier) => {
        if (specifier !== '@txbox/sqlite') return import(specifier)
        return {
          ...sqlite,
          connectSqlite: (path: string, options: Parameters<typeof sqlite.connectSqlite>[1]) => {
            const connection = sqlite.connectSqlite(path, options)
            const store = new Proxy(connection.store, {
              get: (object, property) =>
                property === 'outbox' ? withoutKeyRuns(object.outbox) : Reflect.get(object, property, object),
            })
            return new Proxy(connection, {
              get: (object, property) => {
                if (property === 'store') return store
                const value = Reflect.get(object, property, object)
                return typeof value === 'function' ? value.bind(object) : value
              },
            })
          },
        }
      }
      try {
        const argv = ['--store', 'sqlite', '--url', join(dir, 'outbox.db'), '--nats', natsUrl, '--migrate']
        const stderr = sink()
        expect(await runRelayCli([...argv, '--key-run', '4'], { env: {}, stderr, importer })).toBe(2)
        expect(stderr.lines.join('')).toContain(
          '--key-run 4 needs a store whose capabilities declare keyRuns',
        )
        expect(stderr.lines.join('')).toContain('leave --key-run out or set it to 1')
        // From the variable, the message names the variable.
        const fromEnv = sink()
        expect(
          await runRelayCli(argv, { env: { TXBOX_RELAY_KEY_RUN: '2' }, stderr: fromEnv, importer }),
        ).toBe(2)
        expect(fromEnv.lines.join('')).toContain('TXBOX_RELAY_KEY_RUN 2 needs a store')
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    },
    30_000,
  )
})

describe('txbox-relay on PostgreSQL hands its LISTEN wakeup to the relay', () => {
  const postgresUrl = process.env.TXBOX_POSTGRES_URL
  it.skipIf((!natsUrl || !postgresUrl) && !required)(
    'the relay listens while it runs, and its stop() releases the LISTEN connection before the pool closes',
    async () => {
      if (!natsUrl || !postgresUrl) throw new Error('TXBOX_REQUIRE_ALL=1 but missing a server URL')
      const schema = `wake_${suffix}`
      const { default: pg } = await import('pg')
      const observer = new pg.Pool({ connectionString: postgresUrl, max: 1 })
      // The wakeup's connection: its last statement is the LISTEN, or (once the relay idles)
      // one of the wake-up flag statements, which name the schema's wakeup table or pg_locks.
      const listening = async () =>
        Number(
          (
            await observer.query<{ count: string }>(
              `SELECT count(*) FROM pg_stat_activity
               WHERE query LIKE $1 OR query LIKE $2 OR (query LIKE '%pg_locks%' AND query LIKE $3)`,
              [`LISTEN "${schema}_%`, `%"${schema}"."txbox_wakeup"%`, `%"${schema}".%`],
            )
          ).rows[0]?.count,
        )
      const stop = new AbortController()
      const stderr = sink()
      try {
        const exit = runRelayCli(
          ['--store', 'postgres', '--url', postgresUrl, '--schema', schema, '--migrate', '--nats', natsUrl],
          { env: {}, stderr, signal: stop.signal },
        )
        await expect.poll(listening, { timeout: 20_000, interval: 50 }).toBe(1)
        stop.abort()
        expect(await exit, stderr.lines.join('')).toBe(0)
        // Closed by the relay's stop(): the connection went back to the pool, which then ended.
        expect(await listening()).toBe(0)
        expect(stderr.lines.join('')).not.toContain('closing the store failed')
      } finally {
        await observer.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
        await observer.end()
      }
    },
    60_000,
  )
})
