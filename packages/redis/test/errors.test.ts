import { type ChildProcess, spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { StorageError, type StorageFailure } from '@txbox/core'
import { Redis, type RedisOptions } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execTransaction } from '../src/client.js'
import { classifyRedisError, UnexpectedReplyError } from '../src/errors.js'
import { createRedisStore } from '../src/index.js'
import { schemaKey } from '../src/keys.js'
import { connect, SKIP, SKIP_REASON, useStores } from './helpers.js'

const ev = (eventId: string) => ({ eventId, subject: 's', payload: 'p' })

/** The StorageError a call rejects with (fails the test when it resolves or throws something else). */
const storageError = async (call: Promise<unknown>): Promise<StorageError> => {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(StorageError)
  return error as StorageError
}

const reasonOf = ({ reason, retryable }: StorageFailure): StorageFailure => ({ reason, retryable })

/** An error as ioredis builds one for a Redis error reply. */
const reply = (message: string): Error => Object.assign(new Error(message), { name: 'ReplyError' })

describe('classifyRedisError on constructed driver errors', () => {
  const cases: [string, unknown, StorageFailure][] = [
    ['a thrown non-error', 'boom', { reason: 'unknown', retryable: false }],
    [
      'a reply of another shape',
      new UnexpectedReplyError('reply', 'x'),
      { reason: 'schema', retryable: false },
    ],
    [
      'a socket timeout',
      Object.assign(new Error('connect ETIMEDOUT'), { code: 'ETIMEDOUT' }),
      { reason: 'timeout', retryable: true },
    ],
    ['commandTimeout', new Error('Command timed out'), { reason: 'timeout', retryable: true }],
    [
      'a reset connection',
      Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }),
      { reason: 'unavailable', retryable: true },
    ],
    [
      'a Cluster without reachable nodes',
      Object.assign(new Error('Failed to refresh slots cache.'), { name: 'ClusterAllFailedError' }),
      { reason: 'unavailable', retryable: true },
    ],
    [
      'a Cluster without startup nodes',
      new Error('None of startup nodes is available'),
      { reason: 'unavailable', retryable: true },
    ],
    [
      'a replica after failover',
      reply("READONLY You can't write against a read only replica."),
      { reason: 'unavailable', retryable: true },
    ],
    [
      'a node loading its data',
      reply('LOADING Redis is loading the dataset in memory'),
      { reason: 'unavailable', retryable: true },
    ],
    [
      'a Cluster without a master for the slot',
      reply('CLUSTERDOWN The cluster is down'),
      { reason: 'unavailable', retryable: true },
    ],
    [
      'a slot being migrated',
      reply('TRYAGAIN Multiple keys request during rehashing of slot'),
      { reason: 'unavailable', retryable: true },
    ],
    [
      'a replica whose master is down',
      reply('MASTERDOWN Link with MASTER is down'),
      { reason: 'unavailable', retryable: true },
    ],
    [
      'missing credentials',
      reply('NOAUTH Authentication required.'),
      { reason: 'permission', retryable: false },
    ],
    [
      'too many clients',
      reply('ERR max number of clients reached'),
      { reason: 'throttled', retryable: true },
    ],
    [
      'a value over proto-max-bulk-len',
      reply('ERR string exceeds maximum allowed size (proto-max-bulk-len)'),
      { reason: 'limit', retryable: false },
    ],
    [
      'an aborted MULTI',
      reply('EXECABORT Transaction discarded because of previous errors.'),
      { reason: 'unknown', retryable: false },
    ],
    [
      'a script bug',
      reply('ERR user_script:3: attempt to compare nil with number'),
      { reason: 'unknown', retryable: false },
    ],
  ]
  for (const [what, error, expected] of cases) {
    it(`${what} -> ${expected.reason}`, () => {
      expect(reasonOf(classifyRedisError(error))).toEqual(expected)
    })
  }

  it('adds a hint to the driver message where it says too little', () => {
    expect(
      classifyRedisError(reply('ERR string exceeds maximum allowed size (proto-max-bulk-len)')).detail,
    ).toContain("over the server's proto-max-bulk-len")
    expect(
      classifyRedisError(reply("OOM command not allowed when used memory > 'maxmemory'.")).detail,
    ).toContain('free memory or raise it')
  })
})

describe.skipIf(SKIP)(
  `classifyRedisError on real errors of the shared server (${SKIP ? SKIP_REASON : 'redis'})`,
  () => {
    const { redis, fresh } = useStores()

    it('a key of another type (foreign data) is schema, and the message keeps the operation and WRONGTYPE', async () => {
      const { store } = await fresh()
      await redis.set(store.outbox.keys.counts, 'not a hash')
      const error = await storageError(store.outbox.getCountByStatus())
      expect(reasonOf(error)).toEqual({ reason: 'schema', retryable: false })
      expect(error.message).toMatch(/^\[txbox\] \[redis\] outbox\.getCountByStatus failed: WRONGTYPE/)
      // The same error raised inside a Lua script keeps its code.
      const inScript = await storageError(store.outbox.findOrCreate(ev('e')))
      expect(reasonOf(inScript)).toEqual({ reason: 'schema', retryable: false })
    })

    it('a schema key that is not a layout version is schema, and migrate() leaves it alone', async () => {
      const { store, keyPrefix } = await fresh()
      await redis.set(schemaKey(keyPrefix), 'v2-beta')
      const error = await storageError(store.migrate())
      expect(reasonOf(error)).toEqual({ reason: 'schema', retryable: false })
      expect(error.message).toContain('migrate failed: unexpected schema version from Redis: "v2-beta"')
      expect(await redis.get(schemaKey(keyPrefix))).toBe('v2-beta')
    })

    it('a closed client is unavailable', async () => {
      const { keyPrefix } = await fresh()
      const closed = connect()
      await closed.quit()
      const store = createRedisStore({ redis: closed, keyPrefix })
      const error = await storageError(store.outbox.get('x'))
      expect(reasonOf(error)).toEqual({ reason: 'unavailable', retryable: true })
      expect(error.message).toContain('outbox.get failed: Connection is closed.')
    })

    it('a MULTI aborted by WATCH is a retryable conflict', async () => {
      const { store, keyPrefix } = await fresh()
      const watcher = connect()
      try {
        const watched = schemaKey(keyPrefix)
        await watcher.watch(watched)
        const multi = watcher.multi()
        await store.outbox.findOrCreate(ev('watched'), { tx: multi })
        await redis.set(watched, '2')
        const error = await storageError(execTransaction(multi))
        expect(reasonOf(error)).toEqual({ reason: 'conflict', retryable: true })
        expect(await store.outbox.get('watched')).toBeNull()
      } finally {
        await watcher.quit()
      }
    })

    it('a partly applied MULTI is not retryable and has the reason of its first failure', async () => {
      const { store, keyPrefix } = await fresh()
      await redis.set(store.outbox.keys.counts, 'not a hash')
      const multi = redis.multi()
      multi.set(`txbox:{${keyPrefix}}:caller`, '1')
      await store.outbox.findOrCreate(ev('partly'), { tx: multi })
      const error = await storageError(execTransaction(multi))
      expect(reasonOf(error)).toEqual({ reason: 'schema', retryable: false })
      expect(error.message).toContain('1 of 2 queued commands failed')
    })
  },
)

/** A free TCP port on 127.0.0.1 (asked of the OS, then released for the server to take). */
const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address()
      probe.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      )
    })
  })

/**
 * A Redis server of this file's own, which it may block, fill, restrict and stop without
 * disturbing the shared one other tests use at the same time.
 */
describe.skipIf(SKIP)(`classifyRedisError on a private server (${SKIP ? SKIP_REASON : 'redis'})`, () => {
  let server: ChildProcess | undefined
  let port = 0
  let admin: Redis
  const clients: Redis[] = []
  const client = (options: RedisOptions = {}): Redis => {
    const made = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, ...options })
    made.on('error', () => {}) // reported through the rejected commands
    clients.push(made)
    return made
  }

  beforeAll(async () => {
    port = await freePort()
    server = spawn(
      'redis-server',
      [
        '--bind',
        '127.0.0.1',
        '--port',
        String(port),
        '--save',
        '',
        '--appendonly',
        'no',
        '--busy-reply-threshold',
        '50',
      ],
      { stdio: 'ignore' },
    )
    admin = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => 50 })
    admin.on('error', () => {})
    const deadline = Date.now() + 10_000
    for (;;) {
      try {
        await admin.ping()
        break
      } catch (error) {
        if (Date.now() > deadline) throw error
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
  }, 15_000)

  afterAll(async () => {
    for (const made of clients) made.disconnect()
    admin.disconnect()
    if (server?.exitCode === null) server.kill('SIGKILL')
  })

  it("a server busy with another client's script is throttled", async () => {
    const busy = client()
    const store = createRedisStore({ redis: client(), keyPrefix: 'busy' })
    const running = busy.eval('while true do end', 0).catch((e: unknown) => e)
    // The loop holds the server: once it is past busy-reply-threshold every other call gets BUSY.
    const deadline = Date.now() + 10_000
    let error: StorageError | undefined
    while (error === undefined && Date.now() < deadline) {
      const answer = await store.outbox.get('x').catch((e: unknown) => e)
      if (answer instanceof StorageError && answer.message.includes('BUSY')) error = answer
    }
    await admin.script('KILL')
    await running
    expect(error && reasonOf(error)).toEqual({ reason: 'throttled', retryable: true })
  })

  it('a server at maxmemory is throttled, with a hint', async () => {
    await admin.config('SET', 'maxmemory', '1')
    try {
      const store = createRedisStore({ redis: client(), keyPrefix: 'full' })
      const error = await storageError(store.outbox.findOrCreate(ev('no-room')))
      expect(reasonOf(error)).toEqual({ reason: 'throttled', retryable: true })
      expect(error.message).toContain('free memory or raise it')
    } finally {
      await admin.config('SET', 'maxmemory', '0')
    }
  })

  it('a user without write rights is permission; a wrong password too', async () => {
    await admin.acl('SETUSER', 'reader', 'on', '>secret', '~*', '+@read', '+ping', '+info')
    const reader = createRedisStore({
      redis: client({ username: 'reader', password: 'secret' }),
      keyPrefix: 'acl',
    })
    expect(await reader.outbox.get('x')).toBeNull()
    const denied = await storageError(reader.outbox.findOrCreate(ev('denied')))
    expect(reasonOf(denied)).toEqual({ reason: 'permission', retryable: false })
    expect(denied.message).toContain('NOPERM')
    const wrong = createRedisStore({
      redis: client({ username: 'reader', password: 'wrong', retryStrategy: () => null }),
      keyPrefix: 'acl',
    })
    const refused = await storageError(wrong.outbox.get('x'))
    expect(reasonOf(refused)).toEqual({ reason: 'permission', retryable: false })
  })

  it('a stopped server is unavailable', async () => {
    const store = createRedisStore({ redis: client({ retryStrategy: () => 20 }), keyPrefix: 'stopped' })
    expect(await store.outbox.get('x')).toBeNull()
    const stopped = new Promise((resolve) => server?.once('exit', resolve))
    server?.kill('SIGTERM')
    await stopped
    const error = await storageError(store.outbox.get('x'))
    expect(reasonOf(error)).toEqual({ reason: 'unavailable', retryable: true })
    // Nothing listens on the port any more: a new client cannot connect at all.
    const never = createRedisStore({ redis: client({ retryStrategy: () => null }), keyPrefix: 'stopped' })
    expect(reasonOf(await storageError(never.outbox.get('x')))).toEqual({
      reason: 'unavailable',
      retryable: true,
    })
  })
})
