import type { DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { type Clock, resolveMaxEventBytes, systemClock, ValidationError, Validator } from '@txbox/core'
import { ADAPTER } from './errors.js'
import { MAX_ITEM_BYTES } from './rows.js'

/** Shards of the claim and status indexes when none is given: about 1,000 events/s (README). */
export const DEFAULT_SHARDS = 4
/** The most shards accepted: every claim queries each shard, so more costs every relay poll. */
export const MAX_SHARDS = 64

/** Options of `createDynamoDbStore` and of each repository. */
export interface DynamoDbStoreOptions {
  /** A DynamoDBClient you created (region, credentials, endpoint). txbox never closes it. */
  client: DynamoDBClient
  /** The table holding outbox and inbox items. Default `txbox`. */
  tableName?: string | undefined
  /**
   * Shards of the sparse indexes, 1..64. Default 4. Increase it for more throughput;
   * never decrease it on a table with events (events in the dropped shards would be
   * invisible to claim until their next write).
   */
  shards?: number | undefined
  /** The source of every timestamp. Default the system clock. */
  clock?: Clock | undefined
  /**
   * When set, sent outbox events and processed inbox events get an `expiresAt` (epoch
   * seconds) this many days after they were sent/processed, and `migrate()` turns on
   * DynamoDB TTL for it, so they are deleted without `cleanup` (fractions allowed).
   */
  ttlDays?: number | undefined
  /** How long `migrate()` waits for the table to become ACTIVE. Default 120,000 ms. */
  migrateTimeoutMs?: number | undefined
  /**
   * The largest event `findOrCreate` accepts, in bytes of its NATS message (payload +
   * headers, see `natsMessageBytes`). Default and maximum 409,600, DynamoDB's 400 KB item
   * (NATS's own default `max_payload` is 1 MiB). An event within it whose item (with the
   * adapter's attributes) still exceeds 400 KB also raises `PayloadTooLargeError`.
   */
  maxEventBytes?: number | undefined
  /**
   * How `findOrCreateMany` without `{ tx }` writes new events. `'transaction'` (default):
   * one TransactWriteItems of up to 100 conditional puts (fewer when the items exceed
   * ~3.5 MB), one request per 100 events; DynamoDB bills transactional writes double (2·`s`
   * instead of `s` WCU per item, README "Capacity and cost"). `'puts'`: one conditional
   * PutItem per event, 16 in flight: single-rate WCU, 100 requests per 100 events.
   * Either way a stored id is returned as stored and never overwritten.
   */
  batchEnqueue?: BatchEnqueue | undefined
}

/** The ways `findOrCreateMany` can write a batch (see `DynamoDbStoreOptions.batchEnqueue`). */
export type BatchEnqueue = 'transaction' | 'puts'
const BATCH_ENQUEUE: readonly BatchEnqueue[] = ['transaction', 'puts']

/** The options after validation, shared by the repositories of one store. */
export interface ResolvedOptions {
  client: DynamoDBClient
  tableName: string
  shards: number
  clock: Clock
  ttlDays: number | undefined
  migrateTimeoutMs: number
  maxEventBytes: number
  batchEnqueue: BatchEnqueue
}

/** Validates the options (before any I/O) and fills in the defaults. */
export const resolveOptions = (options: DynamoDbStoreOptions): ResolvedOptions => {
  const validate = new Validator(ADAPTER)
  if (typeof options !== 'object' || options === null)
    throw new ValidationError(ADAPTER, 'options must be an object')
  const { client } = options
  if (
    typeof client !== 'object' ||
    client === null ||
    typeof (client as { send?: unknown }).send !== 'function'
  ) {
    throw new ValidationError(ADAPTER, 'client must be a DynamoDBClient')
  }
  // A DocumentClient would marshal the adapter's AttributeValues a second time.
  if ((client as { constructor?: { name?: string } }).constructor?.name === 'DynamoDBDocumentClient') {
    throw new ValidationError(
      ADAPTER,
      'client must be the DynamoDBClient itself, not a DynamoDBDocumentClient wrapping it',
    )
  }
  const tableName = validate.identifier(options.tableName ?? 'txbox', 'tableName')
  const shards = options.shards ?? DEFAULT_SHARDS
  if (!Number.isInteger(shards) || shards < 1 || shards > MAX_SHARDS) {
    throw new ValidationError(
      ADAPTER,
      `shards must be an integer from 1 to ${MAX_SHARDS}; got ${String(shards)}`,
    )
  }
  const ttlDays = options.ttlDays === undefined ? undefined : validate.nonNegative(options.ttlDays, 'ttlDays')
  const migrateTimeoutMs = options.migrateTimeoutMs ?? 120_000
  if (!Number.isFinite(migrateTimeoutMs) || migrateTimeoutMs <= 0) {
    throw new ValidationError(
      ADAPTER,
      `migrateTimeoutMs must be a positive number; got ${String(migrateTimeoutMs)}`,
    )
  }
  const batchEnqueue = options.batchEnqueue ?? 'transaction'
  if (!BATCH_ENQUEUE.includes(batchEnqueue)) {
    throw new ValidationError(
      ADAPTER,
      `batchEnqueue must be 'transaction' or 'puts'; got ${JSON.stringify(batchEnqueue)}`,
    )
  }
  return {
    client,
    tableName,
    shards,
    clock: options.clock ?? systemClock,
    ttlDays,
    migrateTimeoutMs,
    maxEventBytes: resolveMaxEventBytes(ADAPTER, options.maxEventBytes, MAX_ITEM_BYTES),
    batchEnqueue,
  }
}
