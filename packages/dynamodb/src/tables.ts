import {
  type AttributeValue,
  BatchWriteItemCommand,
  CreateTableCommand,
  type CreateTableCommandInput,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
  UpdateTimeToLiveCommand,
  type WriteRequest,
} from '@aws-sdk/client-dynamodb'
import { isConditionalCheckFailed, isResourceInUse, isResourceNotFound } from './errors.js'
import { N, S } from './items.js'
import { CLAIM_INDEX, LEGACY_STREAM_ALIAS_PREFIX, SCHEMA_PK, STATUS_INDEX } from './keys.js'
import { backoff } from './table-client.js'

/**
 * The schema version `migrate()` creates; recorded in the table as item `txbox#schema`.
 * Version 2: the inbox keys on the event id alone; version 1's `(stream, streamSeq)` alias
 * items are deleted.
 */
export const SCHEMA_VERSION = 2

/** The attribute DynamoDB's TTL deletes by (epoch seconds), set on sent/processed events when `ttlDays` is given. */
export const TTL_ATTRIBUTE = 'expiresAt'

/**
 * The table, as `migrate()` creates it and as migrations/001_create_table.json ships it
 * for users who provision with their own tool (CloudFormation, Terraform, the CLI).
 *
 * - `pk` alone keys every item (no sort key: every access is by event id).
 * - `gsi1` (claim): pending and leased publishing outbox events, per shard, in two
 *   partitions (ready / timed, see keys.ts). It projects only `dueAt`, `seqKey` and
 *   `status`, so the claim query reads small entries and the full item comes back from the
 *   conditional UpdateItem that takes it.
 * - `gsi2` (by status): every event under `<ob|ib>#<status>#<shard>`, sorted by the time
 *   that status is queried by (enqueue order for failed outbox events, sentAt, claimedAt,
 *   processedAt...). Keys plus `availableAt` (outbox resetStale needs it): counts,
 *   cleanup and resetStale read these small entries, then act on the item by `pk`.
 * On-demand billing: the adapter cannot guess capacity, and on-demand has no hot-key
 * throttling beyond the per-partition ceilings the sharding is sized for.
 */
export const tableDefinition = (tableName: string): CreateTableCommandInput => ({
  TableName: tableName,
  BillingMode: 'PAY_PER_REQUEST',
  AttributeDefinitions: [
    { AttributeName: 'pk', AttributeType: 'S' },
    { AttributeName: 'gsi1pk', AttributeType: 'S' },
    { AttributeName: 'gsi1sk', AttributeType: 'S' },
    { AttributeName: 'gsi2pk', AttributeType: 'S' },
    { AttributeName: 'gsi2sk', AttributeType: 'S' },
  ],
  KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
  GlobalSecondaryIndexes: [
    {
      IndexName: CLAIM_INDEX,
      KeySchema: [
        { AttributeName: 'gsi1pk', KeyType: 'HASH' },
        { AttributeName: 'gsi1sk', KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['dueAt', 'seqKey', 'status'] },
    },
    {
      IndexName: STATUS_INDEX,
      KeySchema: [
        { AttributeName: 'gsi2pk', KeyType: 'HASH' },
        { AttributeName: 'gsi2sk', KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['availableAt'] },
    },
  ],
})

/** What `migrate()` needs. */
export interface MigrateOptions {
  client: DynamoDBClient
  tableName: string
  ttlDays: number | undefined
  /** How long to wait for the table and its indexes to become ACTIVE. */
  timeoutMs: number
}

/**
 * Creates the table and its indexes if they do not exist, waits until they are ACTIVE,
 * enables TTL when asked, and records the schema version. Idempotent, and safe from two
 * processes at once: the loser of the CreateTable race gets ResourceInUseException, which
 * means the same as success here, and both then wait for ACTIVE.
 */
export const migrateTable = async (options: MigrateOptions): Promise<void> => {
  const { client, tableName } = options
  try {
    await client.send(new CreateTableCommand(tableDefinition(tableName)))
  } catch (error) {
    if (!isResourceInUse(error)) throw error
  }
  await waitUntilActive(client, tableName, options.timeoutMs)
  if (options.ttlDays !== undefined) await enableTtl(client, tableName)
  // Before the version is recorded, so a migrate() that dies half-way is finished by the next.
  if ((await recordedVersion(client, tableName)) < 2) await deleteStreamAliases(client, tableName)
  try {
    await client.send(
      new PutItemCommand({
        TableName: tableName,
        Item: { pk: S(SCHEMA_PK), version: N(SCHEMA_VERSION) },
        ConditionExpression: 'attribute_not_exists(pk) OR version < :v',
        ExpressionAttributeValues: { ':v': N(SCHEMA_VERSION) },
      }),
    )
  } catch (error) {
    // Already at this version (or a newer one, written by a later release): nothing to do.
    if (!isConditionalCheckFailed(error)) throw error
  }
}

/** The version recorded in the table, 0 for none (a new table, or one created by hand). */
const recordedVersion = async (client: DynamoDBClient, tableName: string): Promise<number> => {
  const { Item } = await client.send(
    new GetItemCommand({ TableName: tableName, Key: { pk: S(SCHEMA_PK) }, ConsistentRead: true }),
  )
  return Number(Item?.version?.N ?? 0)
}

/**
 * Deletes version 1's `(stream, streamSeq)` alias items. One Scan of the table, once per
 * table (a new table is empty); deleting is idempotent, so two migrators may both run it.
 */
const deleteStreamAliases = async (client: DynamoDBClient, tableName: string): Promise<void> => {
  let startKey: Record<string, AttributeValue> | undefined
  do {
    const page = await client.send(
      new ScanCommand({
        TableName: tableName,
        FilterExpression: 'begins_with(pk, :prefix)',
        ExpressionAttributeValues: { ':prefix': S(LEGACY_STREAM_ALIAS_PREFIX) },
        ProjectionExpression: 'pk',
        ConsistentRead: true,
        ExclusiveStartKey: startKey,
      }),
    )
    const deletes = (page.Items ?? []).flatMap((item) =>
      item.pk === undefined ? [] : [{ DeleteRequest: { Key: { pk: item.pk } } }],
    )
    for (let start = 0; start < deletes.length; start += BATCH_WRITE_LIMIT) {
      await batchWrite(client, tableName, deletes.slice(start, start + BATCH_WRITE_LIMIT))
    }
    startKey = page.LastEvaluatedKey
  } while (startKey !== undefined)
}

/** Requests per BatchWriteItem (a DynamoDB limit). */
const BATCH_WRITE_LIMIT = 25

/** One BatchWriteItem, resending what DynamoDB left unprocessed (throttling) with backoff. */
const batchWrite = async (client: DynamoDBClient, tableName: string, requests: WriteRequest[]) => {
  let pending = requests
  for (let attempt = 1; pending.length > 0; attempt++) {
    if (attempt > 1) await backoff(Math.min(attempt, 6))
    const { UnprocessedItems } = await client.send(
      new BatchWriteItemCommand({ RequestItems: { [tableName]: pending } }),
    )
    pending = UnprocessedItems?.[tableName] ?? []
  }
}

const waitUntilActive = async (
  client: DynamoDBClient,
  tableName: string,
  timeoutMs: number,
): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  for (let attempt = 1; ; attempt++) {
    try {
      const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }))
      const indexes = Table?.GlobalSecondaryIndexes ?? []
      if (Table?.TableStatus === 'ACTIVE' && indexes.every((index) => index.IndexStatus === 'ACTIVE')) {
        // A table created by hand without txbox's indexes would make every claim come back
        // empty; say so instead.
        const names = new Set(indexes.map((index) => index.IndexName))
        const missing = [CLAIM_INDEX, STATUS_INDEX].filter((name) => !names.has(name))
        if (missing.length > 0) {
          throw new Error(
            `table ${tableName} exists without the index(es) ${missing.join(', ')}; create it from migrations/001_create_table.json`,
          )
        }
        return
      }
    } catch (error) {
      // A concurrent creator's table may not be visible yet right after ResourceInUse.
      if (!isResourceNotFound(error)) throw error
    }
    if (Date.now() >= deadline)
      throw new Error(`table ${tableName} did not become ACTIVE within ${timeoutMs} ms`)
    await backoff(Math.min(attempt, 6))
  }
}

const enableTtl = async (client: DynamoDBClient, tableName: string): Promise<void> => {
  const { TimeToLiveDescription } = await client.send(new DescribeTimeToLiveCommand({ TableName: tableName }))
  const status = TimeToLiveDescription?.TimeToLiveStatus
  if (status === 'ENABLED' || status === 'ENABLING') return
  try {
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: tableName,
        TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
      }),
    )
  } catch (error) {
    // Two migrations enabling TTL at once: the second is told it is already enabled.
    const message = error instanceof Error ? error.message : ''
    if (!/already enabled/i.test(message)) throw error
  }
}
