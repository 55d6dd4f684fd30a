import { readFileSync } from 'node:fs'
import type { DynamoDBClient, TransactWriteItem } from '@aws-sdk/client-dynamodb'
import { ValidationError } from '@txbox/core'
import { describe, expect, it } from 'vitest'
import { DynamoDbContext } from '../src/client.js'
import { resolveOptions } from '../src/dynamodb-options.js'
import * as index from '../src/index.js'
import {
  createDynamoDbStore,
  dynamoDbMigrations,
  MAX_ITEM_BYTES,
  SCHEMA_VERSION,
  tableDefinition,
} from '../src/index.js'
import { orderKey, shardOf, timeKey } from '../src/keys.js'

/** A client that records every command and answers reads with "nothing stored". */
const fakeClient = (fail?: Error) => {
  const sent: string[] = []
  const client = {
    send: async (command: { constructor: { name: string } }) => {
      sent.push(command.constructor.name)
      if (fail) throw fail
      if (command.constructor.name === 'BatchGetItemCommand') return { Responses: {} }
      return {}
    },
  } as unknown as DynamoDBClient
  return { client, sent }
}

const event = (eventId: string, payload = 'p') => ({ eventId, subject: 'orders.created', payload })

describe('before any call', () => {
  it('rejects an event over the 400 KB item limit with PayloadTooLargeError and sends nothing', async () => {
    const { client, sent } = fakeClient()
    const store = createDynamoDbStore({ client })
    const big = 'x'.repeat(MAX_ITEM_BYTES)
    await expect(store.outbox.findOrCreate(event('big', big))).rejects.toMatchObject({
      name: 'PayloadTooLargeError',
      limitBytes: MAX_ITEM_BYTES,
    })
    // Multi-byte characters count by their UTF-8 size: 140,000 × 3 bytes is over the limit.
    await expect(store.outbox.findOrCreate(event('wide', '€'.repeat(140_000)))).rejects.toMatchObject({
      name: 'PayloadTooLargeError',
    })
    // One oversized event fails the whole batch before the first write.
    await expect(store.outbox.findOrCreateMany([event('ok'), event('big', big)])).rejects.toMatchObject({
      name: 'PayloadTooLargeError',
    })
    await expect(store.inbox.findOrCreate(event('big', big))).rejects.toMatchObject({
      name: 'PayloadTooLargeError',
    })
    await expect(
      store.inbox.claim(event('big', big), { leaseMs: 1_000, workerId: 'w' }),
    ).rejects.toMatchObject({ name: 'PayloadTooLargeError' })
    expect(sent).toEqual([])
  })

  it('takes maxEventBytes up to the item limit, shows it on capabilities, and refuses bigger events', async () => {
    const { client, sent } = fakeClient()
    expect(createDynamoDbStore({ client }).capabilities.maxEventBytes).toBe(MAX_ITEM_BYTES)
    const store = createDynamoDbStore({ client, maxEventBytes: 1_000 })
    expect(store.capabilities.maxEventBytes).toBe(1_000)
    expect(store.outbox.maxEventBytes).toBe(1_000)
    await expect(store.outbox.findOrCreate(event('big', 'x'.repeat(1_000)))).rejects.toMatchObject({
      name: 'PayloadTooLargeError',
      limitBytes: 1_000,
    })
    expect(sent).toEqual([])
    expect(() => createDynamoDbStore({ client, maxEventBytes: 1_048_576 })).toThrow(
      /maxEventBytes must be at most 409600/,
    )
  })

  it('refuses to push the collector past 100 actions', async () => {
    const { client, sent } = fakeClient()
    const store = createDynamoDbStore({ client })
    const full: TransactWriteItem[] = Array.from({ length: 100 }, (_, index) => ({
      ConditionCheck: {
        TableName: 'other',
        Key: { pk: { S: `k${index}` } },
        ConditionExpression: 'attribute_exists(pk)',
      },
    }))
    await expect(store.outbox.findOrCreate(event('one'), { tx: full })).rejects.toBeInstanceOf(
      ValidationError,
    )
    await expect(store.inbox.markAsProcessed('one', { tx: full })).rejects.toBeInstanceOf(ValidationError)
    const almost = full.slice(0, 99)
    await expect(store.outbox.findOrCreateMany([event('a'), event('b')], { tx: almost })).rejects.toThrow(
      /would exceed DynamoDB's limit of 100/,
    )
    expect(almost).toHaveLength(99)
    expect(sent).toEqual([])
    // Exactly at the limit is fine (duplicates inside one batch take one action).
    await store.outbox.findOrCreateMany([event('a'), event('a')], { tx: almost })
    expect(almost).toHaveLength(100)
  })

  it('refuses a second action on one event in the same collector', async () => {
    const { client } = fakeClient()
    const store = createDynamoDbStore({ client })
    const tx: TransactWriteItem[] = []
    await store.outbox.findOrCreate(event('twice'), { tx })
    expect(tx).toHaveLength(1)
    await expect(store.outbox.findOrCreate(event('twice'), { tx })).rejects.toThrow(
      /already has an action on item/,
    )
    await expect(
      store.outbox.findOrCreateMany([event('other'), event('twice')], { tx }),
    ).rejects.toBeInstanceOf(ValidationError)
    expect(tx).toHaveLength(1)
  })

  it('validates options and tx', async () => {
    const { client } = fakeClient()
    expect(() => createDynamoDbStore({ client, tableName: 'bad-name' })).toThrow(ValidationError)
    expect(() => createDynamoDbStore({ client, shards: 0 })).toThrow(ValidationError)
    expect(() => createDynamoDbStore({ client, ttlDays: -1 })).toThrow(ValidationError)
    expect(() => createDynamoDbStore({ client, batchEnqueue: 'batch' as unknown as 'puts' })).toThrow(
      /^\[txbox\] \[dynamodb\] batchEnqueue must be 'transaction' or 'puts'; got "batch"$/,
    )
    // Named like lib-dynamodb's wrapper, which would marshal the adapter's AttributeValues again.
    class DynamoDBDocumentClient {
      send() {}
    }
    expect(() =>
      createDynamoDbStore({ client: new DynamoDBDocumentClient() as unknown as DynamoDBClient }),
    ).toThrow(/not a DynamoDBDocumentClient/)
    const store = createDynamoDbStore({ client })
    await expect(
      store.outbox.findOrCreate(event('x'), { tx: {} as unknown as TransactWriteItem[] }),
    ).rejects.toBeInstanceOf(ValidationError)
  })
})

describe('driver errors', () => {
  it('become StorageError with the driver error as cause', async () => {
    const boom = Object.assign(new Error('throttled'), { name: 'InternalServerError' })
    const { client } = fakeClient(boom)
    const store = createDynamoDbStore({ client })
    const error = await store.outbox
      .claim({ leaseMs: 1_000, workerId: 'w' })
      .catch((caught: unknown) => caught)
    expect(error).toMatchObject({
      name: 'StorageError',
      code: 'STORAGE',
      operation: 'outbox.claim',
      cause: boom,
    })
    expect(String((error as Error).message)).toMatch(
      /^\[txbox\] \[dynamodb\] outbox\.claim failed: throttled/,
    )
    await expect(store.inbox.get('x')).rejects.toMatchObject({ name: 'StorageError', cause: boom })
    await expect(store.migrate()).rejects.toMatchObject({ name: 'StorageError', operation: 'migrate' })
  })
})

describe('keys', () => {
  it('order keys sort by time, then sequence', () => {
    const keys = [orderKey(2, 1), orderKey(1, 3), orderKey(1, 2), orderKey(10, 0)]
    expect([...keys].sort()).toEqual([orderKey(1, 2), orderKey(1, 3), orderKey(2, 1), orderKey(10, 0)])
    expect(timeKey(Date.UTC(2026, 0, 1))).toHaveLength(16)
  })

  it('spreads ids over every shard', () => {
    const used = new Set(Array.from({ length: 1_000 }, (_, index) => shardOf(`evt-${index}`, 8)))
    expect(used.size).toBe(8)
    expect(shardOf('same', 4)).toBe(shardOf('same', 4))
  })

  it('migrates from the shipped files alone: 0001 creates the table, the last one is SCHEMA_VERSION', () => {
    const migrations = dynamoDbMigrations()
    expect(migrations.map((migration) => `${migration.version}_${migration.name}`)).toEqual([
      '1_create_table',
      '2_drop_stream_aliases',
    ])
    expect(migrations.at(-1)?.version).toBe(SCHEMA_VERSION)
    // The shipped CreateTable input, as `aws dynamodb create-table --cli-input-json` takes it.
    const shipped = JSON.parse(
      readFileSync(new URL('../migrations/0001_create_table.json', import.meta.url), 'utf8'),
    )
    expect(shipped.TableName).toBe('txbox')
    expect(tableDefinition('orders_outbox')).toEqual({ ...shipped, TableName: 'orders_outbox' })
    expect(tableDefinition('x').GlobalSecondaryIndexes?.map((index) => index.IndexName)).toEqual([
      'gsi1',
      'gsi2',
    ])
  })
})

describe('names', () => {
  it('keeps every name of the previous release as a deprecated alias of the DynamoDb spelling', () => {
    expect(index.createDynamoStore).toBe(index.createDynamoDbStore)
    expect(index.dynamodbCapabilities).toBe(index.dynamoDbCapabilities)
    expect(index.DynamoOutboxRepository).toBe(index.DynamoDbOutboxRepository)
    expect(index.DynamoInboxRepository).toBe(index.DynamoDbInboxRepository)
    const { client } = fakeClient()
    const store: index.DynamoStore = index.createDynamoStore({ client } satisfies index.DynamoStoreOptions)
    expect(store.outbox).toBeInstanceOf(index.DynamoOutboxRepository)
  })
})

describe('a sweep step', () => {
  /** A status index of two shards served page by page, as DynamoDB's Query does. */
  const indexClient = (partitions: Record<string, string[]>) => {
    const queries: { pk: string; limit: number | undefined }[] = []
    const client = {
      send: async (command: { input: Record<string, unknown> }) => {
        const input = command.input as {
          ExpressionAttributeValues: Record<string, { S: string }>
          Limit?: number
          ExclusiveStartKey?: { pk: { S: string } }
        }
        const pk = input.ExpressionAttributeValues[':ipk']?.S ?? ''
        queries.push({ pk, limit: input.Limit })
        const all = partitions[pk] ?? []
        const from = input.ExclusiveStartKey ? all.indexOf(input.ExclusiveStartKey.pk.S) + 1 : 0
        const page = all.slice(from, from + (input.Limit ?? all.length))
        const more = from + page.length < all.length
        return {
          Items: page.map((id) => ({ pk: { S: id } })),
          ...(more ? { LastEvaluatedKey: { pk: { S: page.at(-1) } } } : {}),
        }
      },
    } as unknown as DynamoDBClient
    return { client, queries }
  }

  it('acts on at most `limit` items, shard after shard, and pages past entries whose write is refused', async () => {
    const { client, queries } = indexClient({
      's#0': ['a1', 'stale1', 'a2', 'stale2'],
      's#1': ['b1', 'b2', 'b3'],
    })
    const db = new DynamoDbContext(resolveOptions({ client, shards: 2 }))
    const acted: string[] = []
    const act = async (entry: { pk?: { S?: string } }) => {
      const pk = entry.pk?.S ?? ''
      if (pk.startsWith('stale')) return false
      acted.push(pk)
      return true
    }
    expect(await db.sweep((shard) => `s#${shard}`, 1_000, 3, act)).toBe(3)
    expect(acted).toEqual(['a1', 'a2', 'b1'])
    // Never asks for more entries than are left of the step.
    expect(queries.map((query) => [query.pk, query.limit])).toEqual([
      ['s#0', 3],
      ['s#0', 1],
      ['s#1', 1],
    ])
    // A step that finds fewer than `limit` has seen every entry.
    acted.length = 0
    expect(await db.sweep((shard) => `s#${shard}`, 1_000, 10, act)).toBe(5)
    expect(acted).toEqual(['a1', 'a2', 'b1', 'b2', 'b3'])
  })
})
