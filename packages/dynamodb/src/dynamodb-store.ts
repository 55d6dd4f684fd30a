import type { TransactWriteItem } from '@aws-sdk/client-dynamodb'
import { defineCapabilities, type TxboxStore, withStorageErrors } from '@txbox/core'
import { DynamoInboxRepository } from './dynamodb-inbox-repository.js'
import { ADAPTER, type DynamoStoreOptions, resolveOptions } from './dynamodb-options.js'
import { DynamoOutboxRepository } from './dynamodb-outbox-repository.js'
import { MAX_ITEM_BYTES } from './items.js'
import { migrateTable } from './tables.js'

/**
 * What the DynamoDB adapter promises: `{ tx }` is a TransactWriteItem[] collector, claims
 * are per-item conditional updates, and an event must fit DynamoDB's 400 KB item, which is
 * also the default and largest `maxEventBytes` (a store's own `capabilities` carry its
 * configured limit).
 */
export const dynamodbCapabilities = defineCapabilities({
  transactions: 'collector',
  claim: 'conditional-update',
  maxEventBytes: MAX_ITEM_BYTES,
})

/** The DynamoDB store: outbox and inbox on one table, with `tx` = TransactWriteItem[]. */
export interface DynamoStore extends TxboxStore<TransactWriteItem[]> {
  readonly outbox: DynamoOutboxRepository
  readonly inbox: DynamoInboxRepository
  /** The table both repositories use. */
  readonly tableName: string
}

/**
 * Creates the outbox and inbox on one DynamoDB table. Options are validated here, before
 * any I/O; `migrate()` creates the table and its indexes (idempotent).
 */
export const createDynamoStore = (options: DynamoStoreOptions): DynamoStore => {
  const resolved = resolveOptions(options)
  return {
    outbox: new DynamoOutboxRepository(options),
    inbox: new DynamoInboxRepository(options),
    tableName: resolved.tableName,
    capabilities: defineCapabilities({ ...dynamodbCapabilities, maxEventBytes: resolved.maxEventBytes }),
    migrate: () =>
      withStorageErrors(ADAPTER, 'migrate', () =>
        migrateTable({
          client: resolved.client,
          tableName: resolved.tableName,
          ttlDays: resolved.ttlDays,
          timeoutMs: resolved.migrateTimeoutMs,
        }),
      ),
  }
}
