import { uniqueSuffix } from '@txbox/conformance'
import { applyMigrations, ManualClock, type Migration } from '@txbox/core'
import type { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createRedisStore } from '../src/index.js'
import { schemaKey } from '../src/keys.js'
import { REDIS_MIGRATIONS, RedisMigrationHistory, SCHEMA_VERSION } from '../src/migrate.js'
import { connect, dropStore, keysOf, SKIP, SKIP_REASON } from './helpers.js'

describe('the migration files', () => {
  it('name each layout version, 1 to the one migrate() records', () => {
    expect(REDIS_MIGRATIONS.map(({ version, name }) => [version, name])).toEqual([
      [1, 'initial'],
      [2, 'inbox_id_only'],
      [3, 'ordering_keys'],
    ])
    expect(SCHEMA_VERSION).toBe('3')
    for (const migration of REDIS_MIGRATIONS) {
      expect(JSON.parse(migration.body)).toMatchObject({ layout: migration.version })
    }
  })

  it('refuses a file whose layout is not its version', async () => {
    // apply() only reads the file: no server is needed to refuse it.
    const history = new RedisMigrationHistory(undefined as never, 'unused')
    const mislabelled: Migration = { version: 3, name: 'copy', body: '{"layout": 2, "summary": "copied"}' }
    await expect(history.apply(mislabelled)).rejects.toThrow('migration 3 (copy) must be {"layout": 3')
  })
})

describe.skipIf(SKIP)(`migrate() and the schema key (${SKIP ? SKIP_REASON : 'redis'})`, () => {
  let redis: Redis
  const prefixes: string[] = []
  const fresh = () => {
    const keyPrefix = `t_${uniqueSuffix()}`
    prefixes.push(keyPrefix)
    return keyPrefix
  }
  const applied = (keyPrefix: string) =>
    applyMigrations(new RedisMigrationHistory(redis, keyPrefix), REDIS_MIGRATIONS, new ManualClock().now)

  beforeAll(() => {
    redis = connect()
  })
  afterEach(async () => {
    for (const keyPrefix of prefixes.splice(0)) await dropStore(redis, keyPrefix)
  })
  afterAll(async () => {
    await redis.quit()
  })

  it('a new store gets every version, recorded as one number; a second run applies nothing', async () => {
    const keyPrefix = fresh()
    expect(await applied(keyPrefix)).toEqual([1, 2, 3])
    expect(await redis.get(schemaKey(keyPrefix))).toBe('3')
    expect(await applied(keyPrefix)).toEqual([])
    // Redis has no schema: migrating creates no key but the history.
    expect(await keysOf(redis, keyPrefix)).toEqual([schemaKey(keyPrefix)])
  })

  it('a store the previous release migrated and used is recognised: only layout 3 is applied, its events work on', async () => {
    const keyPrefix = fresh()
    const clock = new ManualClock()
    // What the previous release left: its SET of the layout version, then events in that layout.
    await redis.set(schemaKey(keyPrefix), '2')
    const before = createRedisStore({ redis, keyPrefix, clock: clock.now })
    await before.outbox.findOrCreateMany([
      { eventId: 'a', subject: 's', payload: '1' },
      { eventId: 'b', subject: 's', payload: '2' },
    ])
    await before.inbox.claim({ eventId: 'in', subject: 's', payload: 'x' }, { leaseMs: 1000, workerId: 'w' })
    expect(await applied(keyPrefix)).toEqual([3])
    const store = createRedisStore({ redis, keyPrefix, clock: clock.now })
    await store.migrate()
    expect(await redis.get(schemaKey(keyPrefix))).toBe('3')
    // Layout 3 moves no data: the events of layout 2 are unkeyed and stay where they are.
    expect(await store.outbox.get('a')).not.toHaveProperty('orderingKey')
    expect((await store.outbox.claim({ leaseMs: 1000, workerId: 'w' })).map((e) => e.eventId)).toEqual([
      'a',
      'b',
    ])
    expect(await store.outbox.markManyAsSent(['a', 'b'], { workerId: 'w' })).toEqual([])
    await store.inbox.markAsProcessed('in')
    expect(await store.outbox.getCountByStatus()).toMatchObject({ pending: 0, sent: 2 })
    expect(await store.inbox.isProcessed('in')).toBe(true)
  })

  it('a store at layout 1 gets layouts 2 and 3 only', async () => {
    const keyPrefix = fresh()
    await redis.set(schemaKey(keyPrefix), '1')
    expect(await applied(keyPrefix)).toEqual([2, 3])
    expect(await redis.get(schemaKey(keyPrefix))).toBe('3')
  })

  it('a store a newer release migrated keeps its version: recording never lowers it', async () => {
    const keyPrefix = fresh()
    await redis.set(schemaKey(keyPrefix), '4')
    await createRedisStore({ redis, keyPrefix }).migrate()
    expect(await redis.get(schemaKey(keyPrefix))).toBe('4')
    // Recording an older version directly (a slower concurrent migrate) leaves it too.
    await new RedisMigrationHistory(redis, keyPrefix).record(REDIS_MIGRATIONS[0] as Migration)
    expect(await redis.get(schemaKey(keyPrefix))).toBe('4')
  })
})
