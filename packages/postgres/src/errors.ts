import type { ClassifyStorageError, StorageErrorReason } from '@txbox/core'

/** The adapter name in every error message: `[txbox] [postgres] ...`. */
export const ADAPTER = 'postgres'

/**
 * SQLSTATE codes the adapter names. Idempotency never relies on catching 23505: every
 * insert that may meet an existing key uses ON CONFLICT DO NOTHING, so a unique violation
 * that still reaches the adapter is a real error and is reported as such.
 */
export const SQLSTATE = {
  uniqueViolation: '23505',
  serializationFailure: '40001',
  deadlockDetected: '40P01',
  undefinedTable: '42P01',
  lockNotAvailable: '55P03',
  // ON CONFLICT (event_id) on a table without that unique key: a partitioned table.
  invalidColumnReference: '42P10',
  insufficientPrivilege: '42501',
} as const

/**
 * The SQLSTATE of a pg `DatabaseError`, if the error is one (not a Node socket error such
 * as `EPIPE`, whose five letters would pass for one).
 */
export const sqlState = (error: unknown): string | undefined => {
  if (typeof error !== 'object' || error === null || 'syscall' in error) return undefined
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}

type Failure = readonly [reason: StorageErrorReason, retryable: boolean]

/** Exact SQLSTATEs, checked before their class (the first two characters). */
const BY_CODE: Readonly<Record<string, Failure>> = {
  [SQLSTATE.serializationFailure]: ['conflict', true],
  [SQLSTATE.deadlockDetected]: ['conflict', true],
  // lock_timeout / NOWAIT, and statement_timeout (query_canceled).
  [SQLSTATE.lockNotAvailable]: ['timeout', true],
  '57014': ['timeout', true],
  // The server's idle_in_transaction_session_timeout ended the session.
  '25P03': ['timeout', true],
  // admin_shutdown, crash_shutdown, cannot_connect_now (starting up, or a failover).
  '57P01': ['unavailable', true],
  '57P02': ['unavailable', true],
  '57P03': ['unavailable', true],
  // A hot standby: writes succeed again once the client reaches the new primary.
  '25006': ['unavailable', true],
  // The database named in the URL does not exist.
  '3D000': ['unavailable', false],
  '53300': ['throttled', true],
  '53200': ['unavailable', true],
  '53100': ['limit', false],
  '53400': ['limit', false],
  [SQLSTATE.undefinedTable]: ['schema', false],
  [SQLSTATE.invalidColumnReference]: ['schema', false],
  '42703': ['schema', false],
  '42883': ['schema', false],
  '3F000': ['schema', false],
  [SQLSTATE.insufficientPrivilege]: ['permission', false],
}

/** SQLSTATE classes: connection exceptions, program limits, authorization. */
const BY_CLASS: Readonly<Record<string, Failure>> = {
  '08': ['unavailable', true],
  '54': ['limit', false],
  '28': ['permission', false],
}

/** Node's socket errors, which pg passes on as they are (`error.code`). */
const BY_ERRNO: Readonly<Record<string, Failure>> = {
  ECONNREFUSED: ['unavailable', true],
  ECONNRESET: ['unavailable', true],
  EPIPE: ['unavailable', true],
  EHOSTUNREACH: ['unavailable', true],
  ENETUNREACH: ['unavailable', true],
  ENOTFOUND: ['unavailable', true],
  EAI_AGAIN: ['unavailable', true],
  ETIMEDOUT: ['timeout', true],
}

/**
 * pg's own errors carry no code, only a message (pg 8): the pool or the client gave up.
 * An ended pool never works again; a dropped connection is replaced by the next checkout.
 */
const BY_MESSAGE: readonly (readonly [RegExp, Failure])[] = [
  [/Cannot use a pool after calling end on the pool/, ['unavailable', false]],
  [/Client was closed and is not queryable/, ['unavailable', false]],
  [/timeout exceeded when trying to connect|connection timeout|Query read timeout/i, ['timeout', true]],
  [/Connection terminated|not queryable|Connection ended/i, ['unavailable', true]],
]

const hint = (code: string): string => {
  switch (code) {
    case SQLSTATE.undefinedTable:
      return ' (did you run migrate()?)'
    case SQLSTATE.invalidColumnReference:
      return " (are the tables partitioned? create the store with the partitioning option they were migrated with, e.g. partitioning: { interval: 'daily' })"
    case SQLSTATE.serializationFailure:
    case SQLSTATE.deadlockDetected:
      return ' (the caller may retry its transaction)'
    default:
      return ''
  }
}

/**
 * Classifies what pg throws: by SQLSTATE (exact code, then class), Node's socket errno,
 * then pg's code-less connection errors. The detail keeps the server's message and names
 * the SQLSTATE, with a hint where the fix is known.
 */
export const classifyPostgresError: ClassifyStorageError = (error) => {
  const message = error instanceof Error ? error.message : String(error)
  const code = sqlState(error)
  if (code !== undefined) {
    const [reason, retryable] = BY_CODE[code] ?? BY_CLASS[code.slice(0, 2)] ?? ['unknown', false]
    return { reason, retryable, detail: `${message} [SQLSTATE ${code}]${hint(code)}` }
  }
  const errno = (error as { code?: unknown } | null)?.code
  const known =
    (typeof errno === 'string' ? BY_ERRNO[errno] : undefined) ??
    BY_MESSAGE.find(([pattern]) => pattern.test(message))?.[1]
  const [reason, retryable] = known ?? ['unknown', false]
  return { reason, retryable, detail: message }
}
