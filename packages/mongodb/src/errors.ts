import type { ClassifyStorageError, StorageFailure } from '@txbox/core'
import type { MongoServerError } from 'mongodb'
import { isDriverError } from './driver-errors.js'

/** The adapter name in every error message. */
export const ADAPTER = 'mongodb'

/**
 * A read-decide-write loop that lost to other writers too many times in a row. Thrown by
 * the client (which does not know the operation's name); the repositories' classify turns
 * it into a retryable `conflict`.
 */
export class ContentionError extends Error {
  override readonly name = 'ContentionError'
}

/** Server error codes by the reason they mean (https://www.mongodb.com/docs/manual/reference/error-codes/). */
const SERVER_CODES: ReadonlyMap<number, Omit<StorageFailure, 'detail'>> = new Map([
  // NamespaceNotFound, IndexNotFound: a collection or index the adapter expects is missing.
  [26, { reason: 'schema', retryable: false }],
  [27, { reason: 'schema', retryable: false }],
  // Unauthorized, AuthenticationFailed.
  [13, { reason: 'permission', retryable: false }],
  [18, { reason: 'permission', retryable: false }],
  // WriteConflict, NoSuchTransaction (the transaction was aborted by a conflict).
  [112, { reason: 'conflict', retryable: true }],
  [251, { reason: 'conflict', retryable: true }],
  // MaxTimeMSExpired, ExceededTimeLimit, NetworkInterfaceExceededTimeLimit, NetworkTimeout.
  [50, { reason: 'timeout', retryable: true }],
  [262, { reason: 'timeout', retryable: true }],
  [202, { reason: 'timeout', retryable: true }],
  [89, { reason: 'timeout', retryable: true }],
  // HostUnreachable, HostNotFound, ShutdownInProgress, NotWritablePrimary, InterruptedAtShutdown,
  // NotPrimaryNoSecondaryOk, PrimarySteppedDown: the server or its primary is going away.
  [6, { reason: 'unavailable', retryable: true }],
  [7, { reason: 'unavailable', retryable: true }],
  [91, { reason: 'unavailable', retryable: true }],
  [10107, { reason: 'unavailable', retryable: true }],
  [11600, { reason: 'unavailable', retryable: true }],
  [13435, { reason: 'unavailable', retryable: true }],
  [189, { reason: 'unavailable', retryable: true }],
  // IngressRequestRateLimitExceeded (MongoDB 8 admission control).
  [462, { reason: 'throttled', retryable: true }],
  // BSONObjectTooLarge, document too large to store or to update, TransactionTooLarge.
  [10334, { reason: 'limit', retryable: false }],
  [17419, { reason: 'limit', retryable: false }],
  [17420, { reason: 'limit', retryable: false }],
  [257, { reason: 'limit', retryable: false }],
])

/** Driver error classes by name (names, not classes: not every supported driver major has each). */
const DRIVER_ERRORS: ReadonlyMap<string, Omit<StorageFailure, 'detail'>> = new Map([
  ['MongoServerSelectionError', { reason: 'unavailable', retryable: true }],
  ['MongoNetworkError', { reason: 'unavailable', retryable: true }],
  ['MongoServerClosedError', { reason: 'unavailable', retryable: true }],
  // The caller closed the client: the same client never works again.
  ['MongoNotConnectedError', { reason: 'unavailable', retryable: false }],
  ['MongoTopologyClosedError', { reason: 'unavailable', retryable: false }],
  ['MongoClientClosedError', { reason: 'unavailable', retryable: false }],
  ['MongoNetworkTimeoutError', { reason: 'timeout', retryable: true }],
  ['MongoOperationTimeoutError', { reason: 'timeout', retryable: true }],
])

const UNKNOWN: StorageFailure = { reason: 'unknown', retryable: false }

/** The server's code and name, which the driver's message leaves out. */
const withCode = (error: MongoServerError, hint = ''): string =>
  `${error.message} (code ${String(error.code)}${error.codeName ? ` ${error.codeName}` : ''})${hint}`

/**
 * Maps a mongodb driver error to why it failed. Server codes first (the precise answer),
 * then the transaction labels the driver and server attach, then the driver's own error
 * classes (network, server selection, closed client, timeouts).
 */
export const classifyMongoDbError: ClassifyStorageError = (error) => {
  if (error instanceof ContentionError) return { reason: 'conflict', retryable: true, detail: error.message }
  if (!isDriverError(error, 'MongoError')) return UNKNOWN
  if (isDriverError(error, 'MongoServerError') && typeof error.code === 'number') {
    const known = SERVER_CODES.get(error.code)
    if (known) {
      const hint = known.reason === 'schema' ? ' (did you run migrate()?)' : ''
      return { ...known, detail: withCode(error, hint) }
    }
  }
  // Labels the server and driver put on errors that are safe to retry as a whole.
  if (error.hasErrorLabel('TransientTransactionError')) return { reason: 'conflict', retryable: true }
  if (error.hasErrorLabel('SystemOverloadedError')) return { reason: 'throttled', retryable: true }
  const byName = DRIVER_ERRORS.get(error.name)
  if (byName) return byName
  if (error.hasErrorLabel('RetryableWriteError')) return { reason: 'unavailable', retryable: true }
  if (isDriverError(error, 'MongoServerError') && typeof error.code === 'number')
    return { ...UNKNOWN, detail: withCode(error) }
  return UNKNOWN
}
