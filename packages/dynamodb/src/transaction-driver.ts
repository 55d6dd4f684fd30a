import { randomUUID } from 'node:crypto'
import {
  type DynamoDBClient,
  type TransactWriteItem,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb'
import type { TransactionDriver } from '@txbox/core'

/**
 * How `store.transaction` runs on DynamoDB, which has no open transactions: begin is a new
 * collector, the writes inside `fn` (yours and txbox's) append actions to it, and commit
 * sends them all in one `TransactWriteItems`, atomically. Rollback discards the actions
 * unsent, so nothing was written. Each commit carries its own `ClientRequestToken`, so the
 * SDK's retry of a request that timed out cannot apply it twice.
 */
export const dynamoDbTransactionDriver = (
  client: DynamoDBClient,
): TransactionDriver<TransactWriteItem[]> => ({
  // A new collector per transaction: core refuses it once sent or discarded, or in another
  // store's writes (which this store's commit would send).
  singleUse: true,
  begin: async () => [],
  commit: async (tx) => {
    if (tx.length === 0) return
    await client.send(new TransactWriteItemsCommand({ TransactItems: tx, ClientRequestToken: randomUUID() }))
  },
  rollback: async (tx) => {
    tx.length = 0
  },
  release: () => {},
})
