import { ManualClock, StorageError, ValidationError } from '@txbox/core'
import { describe, expect, it } from 'vitest'
import { connectPostgres } from '../src/index.js'
import { event, freshSchema, noServer, skipReason, url } from './helpers.js'

describe('connectPostgres without a server', () => {
  it('refuses a malformed URL and a bad option at once, without connecting', async () => {
    expect(() => connectPostgres('postgres://user@host:notaport/db')).toThrow()
    expect(() => connectPostgres('postgres://nobody@127.0.0.1:1/none', { schema: 'bad-name' })).toThrow(
      ValidationError,
    )
  })

  it('builds the pool as asked and logs an idle connection lost instead of crashing', async () => {
    const warnings: unknown[][] = []
    const logger = { warn: (...args: unknown[]) => warnings.push(args), error: () => {} }
    const connection = connectPostgres('postgres://nobody@127.0.0.1:1/none', {
      poolSize: 3,
      connectTimeoutMs: 250,
      prefix: 'app_',
      logger,
    })
    expect(connection.client.options.max).toBe(3)
    expect(connection.client.options.connectionTimeoutMillis).toBe(250)
    expect(connection.store.tablePrefix).toBe('app_')
    expect(connection.client.totalCount).toBe(0)
    connection.client.emit('error', new Error('terminating connection due to administrator command'))
    expect(warnings).toEqual([
      ['idle PostgreSQL connection lost', { error: 'terminating connection due to administrator command' }],
    ])
    const error = await connection.serverVersion().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageError)
    expect(error).toMatchObject({ operation: 'serverVersion', reason: 'unavailable', retryable: true })
    await connection.close()
    await connection.close()
  })
})

describe.skipIf(noServer)(`connectPostgres${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  it('opens a store that migrates, enqueues and claims; serverVersion asks the server; close twice', async () => {
    const schema = freshSchema()
    const clock = new ManualClock()
    const connection = connectPostgres(url ?? '', { schema, clock: clock.now, maxEventBytes: 4096 })
    try {
      expect(connection.lastConnectionError()).toBeUndefined()
      expect(await connection.serverVersion()).toMatch(/^PostgreSQL \d+/)
      const { store } = connection
      expect(store.schema).toBe(schema)
      expect(store.capabilities.maxEventBytes).toBe(4096)
      await store.migrate()
      await store.outbox.findOrCreate(event('a'))
      const claimed = await store.outbox.claim({ leaseMs: 1000, workerId: 'w' })
      expect(claimed.map((e) => [e.eventId, e.enqueuedAt.getTime()])).toEqual([['a', clock.peekMs()]])
    } finally {
      await connection.client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await connection.close()
      await connection.close()
    }
    await expect(connection.store.outbox.get('a')).rejects.toMatchObject({
      reason: 'unavailable',
      retryable: false,
    })
  })
})
