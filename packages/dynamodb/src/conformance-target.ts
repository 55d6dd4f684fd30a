import { readFileSync } from 'node:fs'
import {
  DeleteTableCommand,
  DynamoDBClient,
  GetItemCommand,
  ScanCommand,
  type TransactWriteItem,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb'
import type { ConformanceFixture, ConformanceTarget, ServerConnection } from '@txbox/conformance'
import { uniqueSuffix } from '@txbox/conformance'
import { connectDynamoDb, type DynamoDbConnection, dynamoDbClientConfig } from './connect.js'
import { createDynamoDbStore, dynamoDbCapabilities } from './dynamodb-store.js'
import { lostKeyCounter } from './errors.js'
import { INBOX_EVENT_PREFIX, inboxPk, OUTBOX_EVENT_PREFIX, outboxPk } from './keys.js'
import { toInboxEvent, toOutboxEvent } from './rows.js'

/** The package's version, from its package.json (the same file from `src/` and `dist/`). */
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string
}

/**
 * Where a broken peer sends its requests: a port of this host nothing listens on, so each
 * request fails in the SDK's HTTP handler (ECONNREFUSED), as with a server that went away.
 * A destroyed DynamoDBClient is no break: it opens new connections on the next send.
 */
const DEAD_ENDPOINT = 'http://127.0.0.1:9'

/** Runs of a fixture transaction that keeps losing an ordering key's counter before its error is thrown. */
const KEY_COUNTER_RETRIES = 10

/** Items in `tableName` whose pk starts with `prefix`, by a raw paginated Scan. */
const countByPrefix = async (client: DynamoDBClient, tableName: string, prefix: string): Promise<number> => {
  let total = 0
  let startKey: Record<string, import('@aws-sdk/client-dynamodb').AttributeValue> | undefined
  do {
    const page = await client.send(
      new ScanCommand({
        TableName: tableName,
        FilterExpression: 'begins_with(pk, :prefix)',
        ExpressionAttributeValues: { ':prefix': { S: prefix } },
        Select: 'COUNT',
        ConsistentRead: true,
        ExclusiveStartKey: startKey,
      }),
    )
    total += page.Count ?? 0
    startKey = page.LastEvaluatedKey
  } while (startKey !== undefined)
  return total
}

/**
 * The conformance target of `@txbox/dynamodb`: each fixture is a fresh table `t_<suffix>`
 * on the server, deleted by `dispose`. The oracle reads items with raw GetItem/Scan.
 */
export const createConformanceTarget = (): ConformanceTarget<TransactWriteItem[]> => {
  let connection: DynamoDbConnection | undefined
  let url: string | undefined
  const connected = (): DynamoDBClient => {
    if (!connection) throw new Error('setup() has not connected to DynamoDB')
    return connection.client
  }
  return {
    name: 'dynamodb',
    version,
    engine: 'dynamodb',
    capabilities: dynamoDbCapabilities,
    async setup(server: ServerConnection | undefined) {
      if (!server) throw new Error('the dynamodb target needs a server URL (TXBOX_DYNAMODB_URL)')
      url = server.url
      connection = connectDynamoDb(server.url)
      return { serverVersion: await connection.serverVersion() }
    },
    async create({ clock }): Promise<ConformanceFixture<TransactWriteItem[]>> {
      const raw = connected()
      const tableName = `t_${uniqueSuffix()}`
      const store = createDynamoDbStore({ client: raw, tableName, clock })
      await store.migrate()
      const getRaw = async (pk: string) =>
        (
          await raw.send(
            new GetItemCommand({ TableName: tableName, Key: { pk: { S: pk } }, ConsistentRead: true }),
          )
        ).Item
      return {
        outbox: store.outbox,
        inbox: store.inbox,
        migrate: () => store.migrate(),
        // A client of its own (its own HTTP connections), as another process would have.
        async peer() {
          let endpoint = url ?? ''
          const peerClient = new DynamoDBClient({
            ...dynamoDbClientConfig(endpoint),
            endpoint: async () => {
              const { protocol, hostname, port, pathname } = new URL(endpoint)
              return { protocol, hostname, port: Number(port), path: pathname }
            },
          })
          const peerStore = createDynamoDbStore({ client: peerClient, tableName, clock })
          return {
            outbox: peerStore.outbox,
            inbox: peerStore.inbox,
            dispose: async () => peerClient.destroy(),
            breakConnection: async () => {
              endpoint = DEAD_ENDPOINT
            },
          }
        },
        // A transaction that enqueued a keyed event is cancelled when another enqueue of the
        // key committed first (the counter moved): the caller runs it again, as the contract
        // says for DynamoDB, with a new collector that reads the counter again.
        async transaction(fn, options) {
          for (let attempt = 1; ; attempt++) {
            const items: TransactWriteItem[] = []
            const result = await fn(items)
            if (options?.rollback || items.length === 0) return result
            try {
              await raw.send(new TransactWriteItemsCommand({ TransactItems: items }))
              return result
            } catch (error) {
              if (!lostKeyCounter(error) || attempt >= KEY_COUNTER_RETRIES) throw error
            }
          }
        },
        storeTransaction: store.transaction,
        // A collector has no connection: what makes it foreign is the store whose
        // store.transaction opened it, which sends it (here on the same table, so a write it
        // took would show in the oracle once it commits).
        foreignTransaction: (fn) => createDynamoDbStore({ client: raw, tableName, clock }).transaction(fn),
        oracle: {
          async outbox(eventId) {
            const item = await getRaw(outboxPk(eventId))
            return item ? toOutboxEvent(item) : null
          },
          async inbox(eventId) {
            const item = await getRaw(inboxPk(eventId))
            return item ? toInboxEvent(item) : null
          },
          outboxCount: () => countByPrefix(raw, tableName, OUTBOX_EVENT_PREFIX),
          inboxCount: () => countByPrefix(raw, tableName, INBOX_EVENT_PREFIX),
        },
        async dispose() {
          await raw.send(new DeleteTableCommand({ TableName: tableName }))
        },
      }
    },
    async teardown() {
      await connection?.close()
      connection = undefined
    },
  }
}
