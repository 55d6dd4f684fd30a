import { StorageError, TxboxError } from '../errors.js'

/**
 * Why a storage call failed, as a caller decides what to do next:
 * - `unavailable`: the server could not be reached or dropped the connection;
 * - `timeout`: the call or its connection timed out (the write may or may not have applied);
 * - `conflict`: a serialization failure, deadlock or write conflict: the whole transaction may be retried;
 * - `throttled`: the server refused for load or quota (DynamoDB throughput, too many connections);
 * - `schema`: a table, collection or index is missing or not what the adapter expects (run `migrate()`);
 * - `permission`: the credentials lack a privilege;
 * - `limit`: a value is over a limit of the database (a row or item size);
 * - `unknown`: anything else (a bug, a constraint the adapter did not expect).
 */
export type StorageErrorReason =
  | 'unavailable'
  | 'timeout'
  | 'conflict'
  | 'throttled'
  | 'schema'
  | 'permission'
  | 'limit'
  | 'unknown'

/** Every {@link StorageErrorReason}. */
export const STORAGE_ERROR_REASONS: readonly StorageErrorReason[] = Object.freeze([
  'unavailable',
  'timeout',
  'conflict',
  'throttled',
  'schema',
  'permission',
  'limit',
  'unknown',
])

/** What an adapter's `classify` makes of a driver error. */
export interface StorageFailure {
  readonly reason: StorageErrorReason
  /** True when running the same call (or the caller's transaction) again may succeed. */
  readonly retryable: boolean
  /** The message to report, when it should say more than the driver's own (an error code, a hint). */
  readonly detail?: string | undefined
}

/**
 * An adapter's one mapping from its driver's errors to a {@link StorageFailure}. It never
 * throws; an error it does not recognise is `unknown` and not retryable.
 */
export type ClassifyStorageError = (error: unknown) => StorageFailure

/** The classification of a store that has no driver (the in-memory reference). */
export const classifyUnknown: ClassifyStorageError = () => ({ reason: 'unknown', retryable: false })

/**
 * Runs one repository operation and turns whatever the driver throws into a
 * {@link StorageError} carrying the operation, the classification and the driver error as
 * `cause`. txbox's own errors (validation, not found, lease lost) pass through unchanged.
 */
export const runStorageOperation = async <T>(
  adapter: string,
  operation: string,
  classify: ClassifyStorageError,
  run: () => Promise<T>,
): Promise<T> => {
  try {
    return await run()
  } catch (error) {
    if (error instanceof TxboxError) throw error
    const failure = classify(error)
    throw new StorageError(adapter, operation, error, failure.detail, failure)
  }
}
