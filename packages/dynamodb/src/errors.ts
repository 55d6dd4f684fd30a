/**
 * Recognising the driver errors that carry meaning for txbox. Only these are caught, each
 * where it means something precise (an idempotent insert, a lost compare-and-set); every
 * other driver error reaches `withStorageErrors` and becomes a StorageError with `cause`.
 */

const errorName = (error: unknown): string | undefined =>
  typeof error === 'object' && error !== null && 'name' in error && typeof error.name === 'string'
    ? error.name
    : undefined

/** A ConditionExpression was false: the item is not in the state the write required. */
export const isConditionalCheckFailed = (error: unknown): boolean =>
  errorName(error) === 'ConditionalCheckFailedException'

/** A TransactWriteItems call was cancelled; `cancellationCodes` says why, per action. */
export const isTransactionCanceled = (error: unknown): boolean =>
  errorName(error) === 'TransactionCanceledException'

/** The per-action reasons of a cancelled transaction, in action order ('None' for actions that were fine). */
export const cancellationCodes = (error: unknown): string[] => {
  const reasons = (error as { CancellationReasons?: { Code?: string }[] }).CancellationReasons ?? []
  return reasons.map((reason) => reason.Code ?? 'None')
}

/** CreateTable on a table that exists (or is being created by a concurrent `migrate`). */
export const isResourceInUse = (error: unknown): boolean => errorName(error) === 'ResourceInUseException'

/** The table does not exist. */
export const isResourceNotFound = (error: unknown): boolean =>
  errorName(error) === 'ResourceNotFoundException'

/**
 * Retryable contention: another transaction touched the same item at the same moment
 * (TransactionConflict) or DynamoDB asked us to slow down.
 */
export const isTransientConflict = (error: unknown): boolean => {
  const name = errorName(error)
  return name === 'TransactionConflictException' || name === 'ProvisionedThroughputExceededException'
}
