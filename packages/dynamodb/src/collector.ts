import type { TransactWriteItem } from '@aws-sdk/client-dynamodb'
import { ValidationError } from '@txbox/core'
import { ADAPTER } from './dynamodb-options.js'

/** DynamoDB's limit of actions in one TransactWriteItems call. */
export const MAX_TRANSACTION_ACTIONS = 100

/**
 * The `{ tx }` of this adapter: a `TransactWriteItem[]` the caller later hands to
 * `TransactWriteItemsCommand` with its own actions. Returns undefined without `tx`.
 */
export const collectorOf = (options: unknown): TransactWriteItem[] | undefined => {
  if (options === undefined) return undefined
  if (typeof options !== 'object' || options === null)
    throw new ValidationError(ADAPTER, 'options must be an object')
  const tx = (options as { tx?: unknown }).tx
  if (tx === undefined) return undefined
  if (!Array.isArray(tx)) {
    throw new ValidationError(
      ADAPTER,
      'tx must be a TransactWriteItem[] collector (an array you pass to TransactWriteItemsCommand)',
    )
  }
  return tx as TransactWriteItem[]
}

const targetKey = (action: TransactWriteItem): { table: string | undefined; pk: string | undefined } => {
  if (action.Put) return { table: action.Put.TableName, pk: action.Put.Item?.pk?.S }
  const operation = action.Update ?? action.Delete ?? action.ConditionCheck
  return { table: operation?.TableName, pk: operation?.Key?.pk?.S }
}

/**
 * Checks, before any I/O, that `pks` can join the collector: the transaction stays within
 * 100 actions, and no item gets a second action (DynamoDB rejects a transaction that
 * touches one item twice with a ValidationException for the whole call, which would hide
 * which event was the duplicate).
 */
export const checkCollector = (
  tx: readonly TransactWriteItem[],
  tableName: string,
  pks: readonly string[],
): void => {
  if (tx.length + pks.length > MAX_TRANSACTION_ACTIONS) {
    throw new ValidationError(
      ADAPTER,
      `the transaction already holds ${tx.length} actions; adding ${pks.length} would exceed DynamoDB's limit of ${MAX_TRANSACTION_ACTIONS} actions per TransactWriteItems`,
    )
  }
  const wanted = new Set(pks)
  for (const action of tx) {
    const { table, pk } = targetKey(action)
    if (table === tableName && pk !== undefined && wanted.has(pk)) {
      throw new ValidationError(
        ADAPTER,
        `the transaction already has an action on item ${JSON.stringify(pk)}: DynamoDB allows one action per item in a transaction`,
      )
    }
  }
}
