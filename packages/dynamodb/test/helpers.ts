import { DeleteTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { uniqueSuffix } from '@txbox/conformance'
import { afterAll } from 'vitest'
import { dynamoDbClientConfig } from '../src/connect.js'

/** The DynamoDB Local endpoint the tests run against, when set. */
export const url = process.env.TXBOX_DYNAMODB_URL
export const skipReason = 'TXBOX_DYNAMODB_URL is not set (bash scripts/services.sh up dynamodb)'
if (!url && process.env.TXBOX_REQUIRE_ALL === '1') throw new Error(`TXBOX_REQUIRE_ALL=1 but ${skipReason}`)
export const noServer = !url

/** A port of this host nothing listens on: every request fails with ECONNREFUSED. */
export const DEAD_ENDPOINT = 'http://127.0.0.1:9'

export const event = (eventId: string, payload = `{"id":"${eventId}"}`) => ({
  eventId,
  subject: 'orders.created',
  payload,
})

/**
 * Clients and table names for one test file, all cleaned up after it: tables deleted,
 * clients destroyed.
 */
export const tablesOnServer = () => {
  const clients: DynamoDBClient[] = []
  const tables: string[] = []
  afterAll(async () => {
    const admin = new DynamoDBClient(dynamoDbClientConfig(url ?? DEAD_ENDPOINT))
    for (const tableName of tables)
      await admin.send(new DeleteTableCommand({ TableName: tableName })).catch(() => {})
    admin.destroy()
    for (const created of clients) created.destroy()
  })
  return {
    clients,
    client(): DynamoDBClient {
      const created = new DynamoDBClient(dynamoDbClientConfig(url ?? DEAD_ENDPOINT))
      clients.push(created)
      return created
    },
    /** A fresh table name, deleted after the file. */
    tableName(): string {
      const name = `t_${uniqueSuffix()}`
      tables.push(name)
      return name
    },
  }
}
