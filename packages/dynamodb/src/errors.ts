import type { StorageErrorReason, StorageFailure } from '@txbox/core'
import { KEY_COUNTER_PREFIX } from './keys.js'

/** The adapter name in every error message. */
export const ADAPTER = 'dynamodb'

/**
 * A failure the adapter itself detects while talking to DynamoDB (a row that keeps changing
 * under a retry loop, a table without txbox's indexes), carrying its classification so that
 * `classifyDynamoDbError` does not have to recognise it by its text.
 */
export class DynamoDbFailure extends Error {
  readonly reason: StorageErrorReason
  readonly retryable: boolean

  constructor(reason: StorageErrorReason, retryable: boolean, message: string) {
    super(message)
    this.name = 'DynamoDbFailure'
    this.reason = reason
    this.retryable = retryable
  }
}

const errorName = (error: unknown): string | undefined =>
  typeof error === 'object' && error !== null && 'name' in error && typeof error.name === 'string'
    ? error.name
    : undefined

const errorMessage = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === 'string' ? error : String(error)

/** A ConditionExpression was false: the item is not in the state the write required. */
export const isConditionalCheckFailed = (error: unknown): boolean =>
  errorName(error) === 'ConditionalCheckFailedException'

/** A TransactWriteItems that wrote nothing; its CancellationReasons say why, action by action. */
export const isTransactionCanceled = (error: unknown): boolean =>
  errorName(error) === 'TransactionCanceledException'

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

/** The per-action reasons of a cancelled transaction, in action order ('None' for actions that were fine). */
const cancellationCodes = (error: unknown): string[] => {
  const reasons = (error as { CancellationReasons?: { Code?: string }[] }).CancellationReasons ?? []
  return reasons.map((reason) => reason.Code ?? 'None')
}

/**
 * True when a cancelled transaction lost an ordering key's counter to another enqueue of
 * the key that committed first: the counter update's condition failed, and its reason
 * returns the counter item (ALL_OLD). Running the transaction again (read the counter
 * again, as a new collector does) can succeed: a retryable conflict.
 */
export const lostKeyCounter = (error: unknown): boolean => {
  if (!isTransactionCanceled(error)) return false
  const reasons = (error as { CancellationReasons?: { Code?: string; Item?: { pk?: { S?: string } } }[] })
    .CancellationReasons
  return (reasons ?? []).some(
    (reason) =>
      reason.Code === 'ConditionalCheckFailed' && reason.Item?.pk?.S?.startsWith(KEY_COUNTER_PREFIX),
  )
}

/** Requests refused for load or quota; the SDK already retried them with backoff. */
const THROTTLED = new Set([
  'ProvisionedThroughputExceededException',
  'ThrottlingException',
  'RequestLimitExceeded',
  'LimitExceededException',
])
/** Another transaction or table operation holds the item or table right now. */
const CONFLICT = new Set([
  'TransactionConflictException',
  'TransactionInProgressException',
  'ResourceInUseException',
])
/** The credentials are missing, wrong, expired or lack the privilege. */
const PERMISSION = new Set([
  'AccessDeniedException',
  'UnrecognizedClientException',
  'MissingAuthenticationTokenException',
  'InvalidSignatureException',
  'ExpiredTokenException',
  'IncompleteSignatureException',
  'CredentialsProviderError',
])
/** The service failed or is unreachable behind its endpoint. */
const UNAVAILABLE = new Set(['InternalServerError', 'ServiceUnavailable', 'ServiceUnavailableException'])
/** The SDK or its HTTP handler gave up waiting. */
const TIMEOUT = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeoutException'])
/** Node's socket errors: the endpoint cannot be reached or dropped the connection. */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
])
const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'ECONNABORTED'])

/** The socket error code of `error`, or of the first attempt inside an AggregateError (Node's happy eyeballs). */
const socketCode = (error: unknown): string | undefined => {
  if (typeof error !== 'object' || error === null) return undefined
  const { code, errors } = error as { code?: unknown; errors?: unknown }
  if (typeof code === 'string') return code
  return Array.isArray(errors) ? socketCode(errors[0]) : undefined
}

/** DynamoDB's answer to an item over 400 KB (its own check, after the adapter's conservative one). */
const ITEM_TOO_LARGE = /item size (to update )?has exceeded the maximum allowed size/i

/**
 * The one mapping from AWS SDK v3 errors to txbox's storage failures (the adapter README
 * has the table). Errors are recognised by their `name` (the DynamoDB exception), then by
 * Node's socket `code`; anything else is `unknown` and not retryable.
 */
export const classifyDynamoDbError = (error: unknown): StorageFailure => {
  if (error instanceof DynamoDbFailure) return { reason: error.reason, retryable: error.retryable }
  const name = errorName(error) ?? ''
  const message = errorMessage(error)
  if (name === 'ResourceNotFoundException')
    return { reason: 'schema', retryable: false, detail: `${message} (did you run migrate()?)` }
  if (name === 'ConditionalCheckFailedException') return { reason: 'conflict', retryable: false }
  if (name === 'TransactionCanceledException') {
    const codes = cancellationCodes(error)
    const transient =
      lostKeyCounter(error) ||
      codes.some((code) =>
        ['TransactionConflict', 'ThrottlingError', 'ProvisionedThroughputExceeded'].includes(code),
      )
    return {
      reason: 'conflict',
      retryable: transient,
      detail: `${message} (cancellation reasons: ${codes.join(', ') || 'none given'})`,
    }
  }
  if (CONFLICT.has(name)) return { reason: 'conflict', retryable: true }
  if (THROTTLED.has(name)) return { reason: 'throttled', retryable: true }
  if (PERMISSION.has(name)) return { reason: 'permission', retryable: false }
  if (TIMEOUT.has(name)) return { reason: 'timeout', retryable: true }
  if (UNAVAILABLE.has(name)) return { reason: 'unavailable', retryable: true }
  if (name === 'ItemCollectionSizeLimitExceededException') return { reason: 'limit', retryable: false }
  if (name === 'ValidationException' && ITEM_TOO_LARGE.test(message))
    return { reason: 'limit', retryable: false }
  const code = socketCode(error)
  if (code !== undefined && UNREACHABLE_CODES.has(code))
    return { reason: 'unavailable', retryable: true, detail: `${message || code} (${code})` }
  if (code !== undefined && TIMEOUT_CODES.has(code))
    return { reason: 'timeout', retryable: true, detail: `${message || code} (${code})` }
  return { reason: 'unknown', retryable: false }
}
