import { randomUUID } from 'node:crypto'
import { ManualClock, ValidationError } from '@txbox/core'
import { describe, expect, it } from 'vitest'
import { connectMongoDb } from '../src/index.js'

const url = process.env.TXBOX_MONGODB_URL
if (!url && process.env.TXBOX_REQUIRE_ALL === '1') {
  throw new Error(
    'TXBOX_REQUIRE_ALL=1 but TXBOX_MONGODB_URL is not set: start it with scripts/services.sh up mongodb',
  )
}

describe('connectMongoDb without a server', () => {
  it('refuses a URL that is not a MongoDB connection string', () => {
    expect(() => connectMongoDb('postgres://localhost/x')).toThrow(ValidationError)
    expect(() => connectMongoDb('postgres://localhost/x')).toThrow(
      /url must be a mongodb:\/\/ or mongodb\+srv:\/\/ URL/,
    )
    expect(() => connectMongoDb('mongodb://')).toThrow(/url is not a valid MongoDB connection string/)
  })

  it('takes a seed list, which is no WHATWG URL', async () => {
    const connection = connectMongoDb('mongodb://127.0.0.1:1,127.0.0.1:2/app?replicaSet=rs0')
    expect(connection.client.options.hosts.map(String)).toEqual(['127.0.0.1:1', '127.0.0.1:2'])
    await connection.close()
  })

  it('refuses a store option before any I/O and closes the client it built', () => {
    expect(() => connectMongoDb('mongodb://127.0.0.1:1/x', { prefix: 'bad-prefix' })).toThrow(
      /collectionPrefix/,
    )
  })

  it('builds without talking to the server, takes the connect timeout, and closes twice', async () => {
    const connection = connectMongoDb('mongodb://127.0.0.1:1/nowhere', {
      connectTimeoutMs: 150,
      poolSize: 3,
      prefix: 'p_',
    })
    expect(connection.client.options.serverSelectionTimeoutMS).toBe(150)
    expect(connection.client.options.maxPoolSize).toBe(3)
    expect(connection.lastConnectionError()).toBeUndefined()
    await expect(connection.serverVersion()).rejects.toMatchObject({
      operation: 'serverVersion',
      reason: 'unavailable',
      retryable: true,
    })
    await connection.close()
    await connection.close()
  })

  it('leaves a serverSelectionTimeoutMS of the URL alone', async () => {
    const connection = connectMongoDb('mongodb://127.0.0.1:1/x?serverSelectionTimeoutMS=1234')
    expect(connection.client.options.serverSelectionTimeoutMS).toBe(1234)
    await connection.close()
  })
})

describe.skipIf(!url)('connectMongoDb against the real server (TXBOX_MONGODB_URL)', () => {
  it('migrates, enqueues, answers the server version and closes twice', async () => {
    const prefix = `t_${randomUUID().replaceAll('-', '').slice(0, 12)}_`
    const clock = new ManualClock()
    const connection = connectMongoDb(url ?? '', { prefix, clock: clock.now, maxEventBytes: 4_096 })
    try {
      await connection.store.migrate()
      expect(connection.store.capabilities.maxEventBytes).toBe(4_096)
      const event = await connection.store.outbox.findOrCreate({ eventId: 'e1', subject: 's', payload: 'p' })
      expect(event).toMatchObject({ eventId: 'e1', status: 'pending', enqueuedAt: clock.now() })
      expect(await connection.serverVersion()).toMatch(/^(MongoDB|FerretDB) /)
      const names = await connection.client.db().listCollections({}, { nameOnly: true }).toArray()
      expect(names.map((collection) => collection.name)).toContain(`${prefix}outbox`)
    } finally {
      const db = connection.client.db()
      for (const suffix of ['outbox', 'inbox', 'locks', 'meta'])
        await db.collection(`${prefix}${suffix}`).drop()
      await connection.close()
      await connection.close()
    }
  })
})
