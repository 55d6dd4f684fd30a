import type { ClassifyStorageError, StorageFailure } from '@txbox/core'

/** The adapter name in every error message: `[txbox] [mysql] ...`. */
export const ADAPTER = 'mysql'

/** `ER_DUP_ENTRY`: a unique key already holds the value. */
const ER_DUP_ENTRY = 1062
/** `ER_CANT_DROP_FIELD_OR_KEY`: the column or key to drop does not exist. */
export const ER_CANT_DROP_FIELD_OR_KEY = 1091
/** `ER_DUP_FIELDNAME`: the column to add is already there. */
export const ER_DUP_FIELDNAME = 1060
/** `ER_DUP_KEYNAME`: the key to add is already there. */
export const ER_DUP_KEYNAME = 1061
/** `ER_DATA_OUT_OF_RANGE`: an overflow, how the fenced mark says "not held" and a guarded insert "not in a transaction". */
export const ER_DATA_OUT_OF_RANGE = 1690

/** The server error number mysql2 puts on its errors, or undefined for anything else. */
export const errnoOf = (error: unknown): number | undefined => {
  if (typeof error !== 'object' || error === null) return undefined
  const errno = (error as { errno?: unknown }).errno
  return typeof errno === 'number' ? errno : undefined
}

/** A duplicate key: the only driver error the adapter turns into a normal result. */
export const isDuplicateKey = (error: unknown): boolean => errnoOf(error) === ER_DUP_ENTRY

type Failure = Omit<StorageFailure, 'detail'> & { readonly hint?: string }

const MIGRATE_HINT = 'did you run migrate()?'

/** Server errors by `errno` (the same numbers on MySQL and MariaDB, except where noted). */
const BY_ERRNO: ReadonlyMap<number, Failure> = new Map<number, Failure>([
  // InnoDB rolled the deadlock victim's whole transaction back: it may simply run again.
  [1213, { reason: 'conflict', retryable: true }],
  // A row lock was not granted in innodb_lock_wait_timeout: contention on the same rows,
  // and the adapter rolls its own transaction back before it runs again.
  [1205, { reason: 'conflict', retryable: true }],
  [1146, { reason: 'schema', retryable: false, hint: MIGRATE_HINT }], // ER_NO_SUCH_TABLE
  [1054, { reason: 'schema', retryable: false, hint: MIGRATE_HINT }], // ER_BAD_FIELD_ERROR
  [1176, { reason: 'schema', retryable: false, hint: MIGRATE_HINT }], // ER_KEY_DOES_NOT_EXITS (FORCE INDEX)
  [1049, { reason: 'schema', retryable: false }], // ER_BAD_DB_ERROR
  [1044, { reason: 'permission', retryable: false }], // ER_DBACCESS_DENIED_ERROR
  [1045, { reason: 'permission', retryable: false }], // ER_ACCESS_DENIED_ERROR
  [1142, { reason: 'permission', retryable: false }], // ER_TABLEACCESS_DENIED_ERROR
  [1143, { reason: 'permission', retryable: false }], // ER_COLUMNACCESS_DENIED_ERROR
  [1227, { reason: 'permission', retryable: false }], // ER_SPECIFIC_ACCESS_DENIED_ERROR
  [1040, { reason: 'throttled', retryable: true }], // ER_CON_COUNT_ERROR: too many connections
  [1203, { reason: 'throttled', retryable: true }], // ER_TOO_MANY_USER_CONNECTIONS
  [1226, { reason: 'throttled', retryable: true }], // ER_USER_LIMIT_REACHED
  [1153, { reason: 'limit', retryable: false }], // ER_NET_PACKET_TOO_LARGE
  [1406, { reason: 'limit', retryable: false }], // ER_DATA_TOO_LONG
  [1264, { reason: 'limit', retryable: false }], // ER_WARN_DATA_OUT_OF_RANGE
  [1292, { reason: 'limit', retryable: false }], // ER_TRUNCATED_WRONG_VALUE: a DATETIME out of range
  [1118, { reason: 'limit', retryable: false }], // ER_TOO_BIG_ROWSIZE
  [3024, { reason: 'timeout', retryable: true }], // MySQL ER_QUERY_TIMEOUT (max_execution_time)
  [1969, { reason: 'timeout', retryable: true }], // MariaDB ER_STATEMENT_TIMEOUT (max_statement_time)
  [1053, { reason: 'unavailable', retryable: true }], // ER_SERVER_SHUTDOWN
  [1927, { reason: 'unavailable', retryable: true }], // MariaDB ER_CONNECTION_KILLED
  [2006, { reason: 'unavailable', retryable: true }], // CR_SERVER_GONE_ERROR
  [2013, { reason: 'unavailable', retryable: true }], // CR_SERVER_LOST
  // --read-only: a replica, or a primary demoted during a failover; the new primary takes writes.
  [1290, { reason: 'unavailable', retryable: true }], // ER_OPTION_PREVENTS_STATEMENT
])

/** Client-side errors by mysql2's or Node's `code` (they carry no server `errno`). */
const BY_CODE: ReadonlyMap<string, Failure> = new Map<string, Failure>([
  ['ECONNREFUSED', { reason: 'unavailable', retryable: true }],
  ['ECONNRESET', { reason: 'unavailable', retryable: true }],
  ['EPIPE', { reason: 'unavailable', retryable: true }],
  ['EHOSTUNREACH', { reason: 'unavailable', retryable: true }],
  ['ENETUNREACH', { reason: 'unavailable', retryable: true }],
  ['EAI_AGAIN', { reason: 'unavailable', retryable: true }],
  ['ENOTFOUND', { reason: 'unavailable', retryable: false }],
  ['PROTOCOL_CONNECTION_LOST', { reason: 'unavailable', retryable: true }],
  ['PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR', { reason: 'unavailable', retryable: true }],
  ['PROTOCOL_ENQUEUE_AFTER_QUIT', { reason: 'unavailable', retryable: false }],
  ['ETIMEDOUT', { reason: 'timeout', retryable: true }],
  ['PROTOCOL_SEQUENCE_TIMEOUT', { reason: 'timeout', retryable: true }],
])

/**
 * mysql2 errors that have neither `errno` nor `code`, by their fixed message: a pool after
 * `end()` (no retry helps: the application closed it) and a connection after a fatal error.
 */
const BY_MESSAGE: ReadonlyMap<string, Failure> = new Map<string, Failure>([
  ['Pool is closed.', { reason: 'unavailable', retryable: false }],
  ["Can't add new command when connection is in closed state", { reason: 'unavailable', retryable: true }],
])

const field = (error: unknown, name: string): unknown =>
  typeof error === 'object' && error !== null ? (error as Record<string, unknown>)[name] : undefined

/**
 * The one mapping from mysql2's errors to a reason, by server `errno` first, then the
 * client `code`. The detail keeps the driver's message and adds the error's name, number
 * and SQLSTATE (and what to do, for a missing table), so a log line says which error it was.
 */
export const classifyMySqlError: ClassifyStorageError = (error) => {
  const errno = errnoOf(error)
  const code = field(error, 'code')
  const message = error instanceof Error ? error.message : String(error)
  const failure = (errno === undefined ? undefined : BY_ERRNO.get(errno)) ??
    (typeof code === 'string' ? BY_CODE.get(code) : undefined) ??
    BY_MESSAGE.get(message) ?? { reason: 'unknown', retryable: false }
  const sqlState = field(error, 'sqlState')
  const facts = [
    typeof code === 'string' ? code : undefined,
    errno === undefined ? undefined : `errno ${errno}`,
    typeof sqlState === 'string' ? `SQLSTATE ${sqlState}` : undefined,
  ].filter((fact) => fact !== undefined)
  const said = facts.length === 0 ? '' : ` (${facts.join(', ')})`
  const hint = failure.hint === undefined ? '' : `: ${failure.hint}`
  return { reason: failure.reason, retryable: failure.retryable, detail: `${message}${said}${hint}` }
}
