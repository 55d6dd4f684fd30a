import type { TransactWriteItem } from '@aws-sdk/client-dynamodb'
import {
  AmbientTransactions,
  defineCapabilities,
  type TransactionalStore,
  type TxboxStore,
} from '@txbox/core'
import { DynamoDbInboxRepository } from './dynamodb-inbox-repository.js'
import { type DynamoDbStoreOptions, resolveOptions } from './dynamodb-options.js'
import { DynamoDbOutboxRepository } from './dynamodb-outbox-repository.js'
import { ADAPTER, classifyDynamoDbError } from './errors.js'
import { migrateDynamoDb } from './migrate.js'
import { MAX_ITEM_BYTES } from './rows.js'
import { dynamoDbTransactionDriver } from './transaction-driver.js'

/**
 * What the DynamoDB adapter promises: `{ tx }` is a TransactWriteItem[] collector, claims
 * are per-item conditional updates (a transaction with a check on the predecessor for a
 * keyed event), ordering keys are kept, and an event must fit DynamoDB's 400 KB item, which is
 * also the default and largest `maxEventBytes` (a store's own `capabilities` carry its
 * configured limit).
 */
export const dynamoDbCapabilities = defineCapabilities({
  transactions: 'collector',
  claim: 'conditional-update',
  maxEventBytes: MAX_ITEM_BYTES,
  orderingKeys: true,
})

/** The DynamoDB store: outbox and inbox on one table, with `tx` = TransactWriteItem[]. */
export interface DynamoDbStore extends TxboxStore<TransactWriteItem[]> {
  readonly outbox: DynamoDbOutboxRepository
  readonly inbox: DynamoDbInboxRepository
  /**
   * Runs `fn(collector)`: your actions (`collector.push(...)`) and the writes txbox makes
   * inside `fn` are sent together in one `TransactWriteItems` when `fn` resolves (all or
   * none), and discarded unsent when it throws.
   */
  readonly transaction: TransactionalStore<TransactWriteItem[]>['transaction']
  /** The table both repositories use. */
  readonly tableName: string
}

/**
 * Creates the outbox and inbox on one DynamoDB table. Options are validated here, before
 * any I/O; `migrate()` creates the table and its indexes (idempotent).
 */
export const createDynamoDbStore = (options: DynamoDbStoreOptions): DynamoDbStore => {
  const resolved = resolveOptions(options)
  const ambient = new AmbientTransactions<TransactWriteItem[]>({
    adapter: ADAPTER,
    driver: dynamoDbTransactionDriver(resolved.client),
    classify: classifyDynamoDbError,
  })
  return {
    outbox: new DynamoDbOutboxRepository(options, ambient),
    inbox: new DynamoDbInboxRepository(options, ambient),
    transaction: (fn, transactionOptions) => ambient.run(fn, transactionOptions),
    tableName: resolved.tableName,
    capabilities: defineCapabilities({ ...dynamoDbCapabilities, maxEventBytes: resolved.maxEventBytes }),
    migrate: () => migrateDynamoDb(resolved, resolved.clock),
  }
}
