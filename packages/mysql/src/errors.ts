/** The adapter name in every error message: `[txbox] [mysql] ...`. */
export const ADAPTER = 'mysql'

/** `ER_DUP_ENTRY`: a unique key already holds the value. */
export const ER_DUP_ENTRY = 1062
/** `ER_LOCK_DEADLOCK`: InnoDB chose this transaction as a deadlock victim and rolled it back. */
export const ER_LOCK_DEADLOCK = 1213
/** `ER_LOCK_WAIT_TIMEOUT`: a row lock was not granted within `innodb_lock_wait_timeout`. */
export const ER_LOCK_WAIT_TIMEOUT = 1205

/** `ER_CANT_DROP_FIELD_OR_KEY`: the column or key to drop does not exist. */
export const ER_CANT_DROP_FIELD_OR_KEY = 1091

/** The server error number mysql2 puts on its errors, or undefined for anything else. */
export const errnoOf = (error: unknown): number | undefined => {
  if (typeof error !== 'object' || error === null) return undefined
  const errno = (error as { errno?: unknown }).errno
  return typeof errno === 'number' ? errno : undefined
}

/** A duplicate key: the only driver error the adapter turns into a normal result. */
export const isDuplicateKey = (error: unknown): boolean => errnoOf(error) === ER_DUP_ENTRY

/**
 * Errors after which the whole transaction is gone and may simply be run again: a deadlock
 * victim is rolled back by InnoDB; a lock wait timeout is retried as a whole too (we roll back
 * ourselves), so a claimer never keeps a half-done claim.
 */
export const isRetryable = (error: unknown): boolean => {
  const errno = errnoOf(error)
  return errno === ER_LOCK_DEADLOCK || errno === ER_LOCK_WAIT_TIMEOUT
}
