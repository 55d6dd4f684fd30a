import { ListTablesCommand } from '@aws-sdk/client-dynamodb'
import { ManualClock, StorageError, ValidationError } from '@txbox/core'
import { describe, expect, it } from 'vitest'
import { connectDynamoDb } from '../src/index.js'
import { DEAD_ENDPOINT, event, noServer, skipReason, tablesOnServer, url } from './helpers.js'

describe('connectDynamoDb without a server', () => {
  it('refuses an endpoint that is no http(s) URL and a bad option at once', () => {
    expect(() => connectDynamoDb('dynamodb.eu-west-1')).toThrow(ValidationError)
    expect(() => connectDynamoDb('redis://127.0.0.1:6379')).toThrow(
      /url must start with http:\/\/ or https:\/\/ .*; got scheme redis:$/,
    )
    expect(() => connectDynamoDb(DEAD_ENDPOINT, { prefix: 'bad-name' })).toThrow(ValidationError)
    expect(() => connectDynamoDb(DEAD_ENDPOINT, { shards: 0 })).toThrow(ValidationError)
  })

  it('builds the client as asked without sending anything; local endpoints get the fixed credentials', async () => {
    const connection = connectDynamoDb(DEAD_ENDPOINT, {
      prefix: 'orders_txbox',
      region: 'eu-west-1',
      maxEventBytes: 2_048,
      connectTimeoutMs: 250,
    })
    expect(connection.store.tableName).toBe('orders_txbox')
    expect(connection.store.capabilities.maxEventBytes).toBe(2_048)
    expect(await connection.client.config.region()).toBe('eu-west-1')
    if (process.env.AWS_ACCESS_KEY_ID === undefined) {
      expect(await connection.client.config.credentials()).toMatchObject({ accessKeyId: 'local' })
    }
    expect(connection.lastConnectionError()).toBeUndefined()
    const error = await connection.serverVersion().catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(StorageError)
    expect(error).toMatchObject({ operation: 'serverVersion', reason: 'unavailable', retryable: true })
    await connection.close()
    await connection.close()
  })
})

describe.skipIf(noServer)(`connectDynamoDb${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  const server = tablesOnServer()

  it('opens a store that migrates, enqueues and claims; serverVersion asks the server; close twice', async () => {
    const clock = new ManualClock()
    const tableName = server.tableName()
    const connection = connectDynamoDb(url ?? '', { prefix: tableName, clock: clock.now, shards: 2 })
    try {
      expect(await connection.serverVersion()).toBe('DynamoDB Local')
      const { store } = connection
      await store.migrate()
      await store.outbox.findOrCreate(event('a'))
      const claimed = await store.outbox.claim({ leaseMs: 1_000, workerId: 'w' })
      expect(claimed.map((e) => [e.eventId, e.enqueuedAt.getTime()])).toEqual([['a', clock.peekMs()]])
      const { TableNames } = await connection.client.send(new ListTablesCommand({}))
      expect(TableNames).toContain(tableName)
    } finally {
      await connection.close()
      await connection.close()
    }
  })
})
