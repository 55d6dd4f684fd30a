import { randomUUID } from 'node:crypto'
import {
  type DynamoDBClient,
  type TransactWriteItem,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb'
import type { TransactionDriver } from '@txbox/core'
import { rechainLostCounters } from './collector-keys.js'
import { isTransactionCanceled } from './errors.js'
import type { Item } from './rows.js'

/** Sends of one commit that lost ordering key counters before the cancellation is thrown. */
const RECHAIN_ATTEMPTS = 10

/**
 * How `store.transaction` runs on DynamoDB, which has no open transactions: begin is a new
 * collector, the writes inside `fn` (yours and txbox's) append actions to it, and commit
 * sends them all in one `TransactWriteItems`, atomically. Rollback discards the actions
 * unsent, so nothing was written. Keyed events get their `keySeq` for good at commit: if
 * another enqueue of the key committed since they were collected, they are chained after it. Each commit carries its own `ClientRequestToken`, so the
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
    for (let attempt = 1; ; attempt++) {
      try {
        await client.send(
          new TransactWriteItemsCommand({ TransactItems: tx, ClientRequestToken: randomUUID() }),
        )
        return
      } catch (error) {
        // Another enqueue of an ordering key committed first: the key's events are chained
        // again after it and the same transaction is sent again (the caller's own actions
        // are unchanged), a bounded number of times; then a retryable conflict.
        if (!isTransactionCanceled(error) || attempt >= RECHAIN_ATTEMPTS) throw error
        const reasons = (
          (error as { CancellationReasons?: { Code?: string; Item?: Item }[] }).CancellationReasons ?? []
        ).map((reason) => ({ code: reason.Code ?? 'None', item: reason.Item }))
        if (reasons.length !== tx.length || !rechainLostCounters(tx, reasons)) throw error
      }
    }
  },
  rollback: async (tx) => {
    tx.length = 0
  },
  release: () => {},
})
