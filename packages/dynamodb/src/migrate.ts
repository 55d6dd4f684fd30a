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
import {
  applyMigrations,
  type Clock,
  loadMigrations,
  type Migration,
  type MigrationHistory,
  noMigrationScripts,
  runStorageOperation,
  versionsThrough,
} from '@txbox/core'
import { backoff } from './client.js'
import type { ResolvedOptions } from './dynamodb-options.js'
import {
  ADAPTER,
  classifyDynamoDbError,
  DynamoDbFailure,
  isConditionalCheckFailed,
  isResourceInUse,
  isResourceNotFound,
} from './errors.js'
import { CLAIM_INDEX, SCHEMA_PK, STATUS_INDEX } from './keys.js'
import { N, S } from './rows.js'

/**
 * The schema version the shipped migrations reach (the number of the last file in
 * `migrations/`), recorded in the table as item `txbox#schema`. Version 2: the inbox keys
 * on the event id alone; version 1's `(stream, streamSeq)` alias items are deleted.
 */
export const SCHEMA_VERSION = 2

/** The attribute DynamoDB's TTL deletes by (epoch seconds), set on sent/processed events when `ttlDays` is given. */
export const TTL_ATTRIBUTE = 'expiresAt'

let migrationCache: readonly Migration[] | undefined

/**
 * The steps shipped in `migrations/` (next to `src/` and `dist/`), read once: `migrate()`
 * runs exactly what users who provision with their own tool apply.
 * - `0001_create_table.json`: the `CreateTable` input (its `TableName` replaced by yours);
 * - `0002_drop_stream_aliases.json`: `DeleteItems` whose `pk` begins with a prefix.
 */
export const dynamoDbMigrations = (): readonly Migration[] => {
  migrationCache ??= loadMigrations(new URL('../migrations/', import.meta.url))
  return migrationCache
}

/** The step of a migration file: a table to create, or items to delete by `pk` prefix. */
type MigrationStep = CreateTableCommandInput | { DeleteItems: { PkBeginsWith: string } }

const stepOf = (migration: Migration): MigrationStep => JSON.parse(migration.body) as MigrationStep

/**
 * The table, as `migrate()` creates it from `migrations/0001_create_table.json`:
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
export const tableDefinition = (tableName: string): CreateTableCommandInput => {
  const [create] = dynamoDbMigrations()
  return { ...(stepOf(create as Migration) as CreateTableCommandInput), TableName: tableName }
}

/**
 * The history of one table: the item `txbox#schema` holds the highest version applied
 * (`{ version: 2 }`, as every earlier release wrote it), so versions 1..version count as
 * applied. No lock: every step is idempotent and safe from two processes at once (the
 * loser of the CreateTable race gets ResourceInUseException, which means the same as
 * success, and both wait for ACTIVE; deleting is idempotent; the version only grows).
 */
export class DynamoDbMigrationHistory implements MigrationHistory {
  readonly #client: DynamoDBClient
  readonly #tableName: string
  readonly #timeoutMs: number

  constructor(client: DynamoDBClient, tableName: string, timeoutMs: number) {
    this.#client = client
    this.#tableName = tableName
    this.#timeoutMs = timeoutMs
  }

  locked<T>(apply: () => Promise<T>): Promise<T> {
    return apply()
  }

  async appliedVersions(): Promise<number[]> {
    try {
      const { Item } = await this.#client.send(
        new GetItemCommand({ TableName: this.#tableName, Key: { pk: S(SCHEMA_PK) }, ConsistentRead: true }),
      )
      const version = Number(Item?.version?.N ?? 0)
      return versionsThrough(version)
    } catch (error) {
      // No table yet (or one still being created by a concurrent migrate): nothing applied.
      if (isResourceNotFound(error)) return []
      throw error
    }
  }

  async apply(migration: Migration): Promise<void> {
    const step = stepOf(migration)
    if ('DeleteItems' in step) return this.#deleteByPrefix(step.DeleteItems.PkBeginsWith)
    try {
      await this.#client.send(new CreateTableCommand({ ...step, TableName: this.#tableName }))
    } catch (error) {
      // A table created by hand or by a concurrent migrate(): checked like a new one.
      if (!isResourceInUse(error)) throw error
    }
    await this.#waitUntilActive()
  }

  async record(migration: Migration, appliedAt: Date): Promise<void> {
    try {
      await this.#client.send(
        new PutItemCommand({
          TableName: this.#tableName,
          Item: { pk: S(SCHEMA_PK), version: N(migration.version), appliedAt: N(appliedAt.getTime()) },
          ConditionExpression: 'attribute_not_exists(pk) OR version < :v',
          ExpressionAttributeValues: { ':v': N(migration.version) },
        }),
      )
    } catch (error) {
      // Already at this version (or a newer one, written by a later release): nothing to do.
      if (!isConditionalCheckFailed(error)) throw error
    }
  }

  /** Deletes the items whose `pk` begins with `prefix`: one Scan of the table, batched deletes. */
  async #deleteByPrefix(prefix: string): Promise<void> {
    let startKey: Record<string, AttributeValue> | undefined
    do {
      const page = await this.#client.send(
        new ScanCommand({
          TableName: this.#tableName,
          FilterExpression: 'begins_with(pk, :prefix)',
          ExpressionAttributeValues: { ':prefix': S(prefix) },
          ProjectionExpression: 'pk',
          ConsistentRead: true,
          ExclusiveStartKey: startKey,
        }),
      )
      const deletes = (page.Items ?? []).flatMap((item) =>
        item.pk === undefined ? [] : [{ DeleteRequest: { Key: { pk: item.pk } } }],
      )
      for (let start = 0; start < deletes.length; start += BATCH_WRITE_LIMIT) {
        await this.#batchWrite(deletes.slice(start, start + BATCH_WRITE_LIMIT))
      }
      startKey = page.LastEvaluatedKey
    } while (startKey !== undefined)
  }

  /** One BatchWriteItem, resending what DynamoDB left unprocessed (throttling) with backoff. */
  async #batchWrite(requests: WriteRequest[]): Promise<void> {
    let pending = requests
    for (let attempt = 1; pending.length > 0; attempt++) {
      if (attempt > 1) await backoff(Math.min(attempt, 6))
      const { UnprocessedItems } = await this.#client.send(
        new BatchWriteItemCommand({ RequestItems: { [this.#tableName]: pending } }),
      )
      pending = UnprocessedItems?.[this.#tableName] ?? []
    }
  }

  async #waitUntilActive(): Promise<void> {
    const deadline = Date.now() + this.#timeoutMs
    for (let attempt = 1; ; attempt++) {
      try {
        const { Table } = await this.#client.send(new DescribeTableCommand({ TableName: this.#tableName }))
        const indexes = Table?.GlobalSecondaryIndexes ?? []
        if (Table?.TableStatus === 'ACTIVE' && indexes.every((index) => index.IndexStatus === 'ACTIVE')) {
          // A table created by hand without txbox's indexes would make every claim come back
          // empty; say so instead.
          const names = new Set(indexes.map((index) => index.IndexName))
          const missing = [CLAIM_INDEX, STATUS_INDEX].filter((name) => !names.has(name))
          if (missing.length > 0) {
            throw new DynamoDbFailure(
              'schema',
              false,
              `table ${this.#tableName} exists without the index(es) ${missing.join(', ')}; create it from migrations/0001_create_table.json`,
            )
          }
          return
        }
      } catch (error) {
        // A concurrent creator's table may not be visible yet right after ResourceInUse.
        if (!isResourceNotFound(error)) throw error
      }
      if (Date.now() >= deadline) {
        throw new DynamoDbFailure(
          'timeout',
          true,
          `table ${this.#tableName} did not become ACTIVE within ${this.#timeoutMs} ms`,
        )
      }
      await backoff(Math.min(attempt, 6))
    }
  }
}

/** Requests per BatchWriteItem (a DynamoDB limit). */
const BATCH_WRITE_LIMIT = 25

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

/**
 * `migrate()`: applies the shipped migrations the table has not recorded (core
 * `applyMigrations`), then turns on TTL when `ttlDays` is set (a setting, not a schema
 * step: it follows the option on every run). Driver errors become a classified StorageError.
 */
export const migrateDynamoDb = (
  options: Pick<ResolvedOptions, 'client' | 'tableName' | 'ttlDays' | 'migrateTimeoutMs'>,
  clock: Clock,
): Promise<void> =>
  runStorageOperation(ADAPTER, 'migrate', classifyDynamoDbError, async () => {
    const { client, tableName } = options
    await applyMigrations(
      new DynamoDbMigrationHistory(client, tableName, options.migrateTimeoutMs),
      dynamoDbMigrations(),
      clock,
    )
    if (options.ttlDays !== undefined) await enableTtl(client, tableName)
  })

/**
 * There is no DDL to print for DynamoDB: always throws a `ValidationError` saying what
 * `migrate()` creates. Kept beside the SQL adapters' `migrationScripts` so that
 * `txbox-migrations print --store dynamodb` answers with that instead of a missing export.
 */
export const migrationScripts = (_options?: object): never =>
  noMigrationScripts(
    ADAPTER,
    "migrate() creates the table (the CreateTable input of @txbox/dynamodb's migrations/0001_create_table.json, or tableDefinition(name), for CloudFormation, CDK or Terraform), turns on its TTL when ttlDays is set, and records the version in the item txbox#schema",
  )
