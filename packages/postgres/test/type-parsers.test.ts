import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPostgresStore, type PostgresStore } from '../src/index.js'
import { event, freshSchema, noServer, skipReason, url } from './helpers.js'

describe.skipIf(noServer)(`application type parsers${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  // An application that reads every column as raw text (a common choice for timestamps and
  // bigints): the store must still return Dates and numbers.
  const pool = new pg.Pool({
    connectionString: url,
    max: 2,
    types: { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig,
  })
  const schema = freshSchema()
  let store: PostgresStore

  beforeAll(async () => {
    store = createPostgresStore({ pool, schema, clock: () => new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 678)) })
    await store.migrate()
  })
  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await pool.end()
  })

  it('returns Dates and numbers whatever parsers the pool has', async () => {
    const created = await store.outbox.findOrCreate(event('t-1'))
    expect(created.enqueuedAt).toEqual(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 678)))
    expect(created.retryCount).toBe(0)
    const [claimed] = await store.outbox.claim({ leaseMs: 1500, workerId: 'w' })
    expect(claimed?.leaseUntil).toEqual(new Date(Date.UTC(2026, 0, 2, 3, 4, 7, 178)))
    const inbound = await store.inbox.findOrCreate(event('t-2', { stream: 'S', streamSeq: 2 ** 40 }))
    expect(inbound.streamSeq).toBe(2 ** 40)
    expect(inbound.deliveries).toBe(1)
    expect(inbound.receivedAt).toBeInstanceOf(Date)
  })
})
