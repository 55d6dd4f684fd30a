import type { ClassifyStorageError, StorageErrorReason, StorageFailure } from '@txbox/core'

/** The adapter name every error message of this package carries. */
export const ADAPTER = 'sqlite'

/** The extended result code better-sqlite3 puts on its `SqliteError` (e.g. `SQLITE_BUSY`). */
export const sqliteErrorCode = (error: unknown): string | undefined => {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined
  const { code } = error as { code: unknown }
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined
}

/** What better-sqlite3 throws (a TypeError, no code) for any statement on a closed `Database`. */
const CLOSED = 'The database connection is not open'

/** SQLITE_ERROR's messages for a table, index or column that is not there. */
const MISSING_SCHEMA = /^no such (table|index|column)\b|\bhas no column named\b/

interface Rule {
  readonly reason: StorageErrorReason
  readonly retryable: boolean
  readonly hint?: string
}

/**
 * By primary result code (an extended code such as `SQLITE_BUSY_SNAPSHOT` falls back to its
 * primary `SQLITE_BUSY` unless listed itself). Codes absent here are `unknown`: the adapter
 * expects no constraint error, since its idempotent inserts use `ON CONFLICT DO NOTHING`.
 */
const RULES: Readonly<Record<string, Rule>> = {
  // Another connection committed after this transaction began reading (WAL): retry the
  // whole transaction, which then reads the new snapshot.
  SQLITE_BUSY_SNAPSHOT: { reason: 'conflict', retryable: true },
  SQLITE_BUSY: {
    reason: 'timeout',
    retryable: true,
    hint: 'the database stayed locked longer than the busy timeout',
  },
  SQLITE_LOCKED: { reason: 'conflict', retryable: true },
  // A statement prepared before another connection changed the schema.
  SQLITE_SCHEMA: { reason: 'conflict', retryable: true },
  SQLITE_READONLY: { reason: 'permission', retryable: false },
  SQLITE_PERM: { reason: 'permission', retryable: false },
  SQLITE_AUTH: { reason: 'permission', retryable: false },
  SQLITE_CANTOPEN: { reason: 'unavailable', retryable: false },
  SQLITE_IOERR: { reason: 'unavailable', retryable: true },
  SQLITE_FULL: { reason: 'limit', retryable: false },
  SQLITE_TOOBIG: { reason: 'limit', retryable: false },
}

const withCode = (code: string, error: unknown, hint: string | undefined): string => {
  const message = error instanceof Error ? error.message : String(error)
  return `${code}: ${message}${hint === undefined ? '' : ` (${hint})`}`
}

const classify = (error: unknown, missingSchemaHint: string | undefined): StorageFailure => {
  const code = sqliteErrorCode(error)
  if (code === undefined) {
    if (error instanceof TypeError && error.message === CLOSED) {
      return { reason: 'unavailable', retryable: false, detail: `${CLOSED} (the Database was closed)` }
    }
    return { reason: 'unknown', retryable: false }
  }
  const message = error instanceof Error ? error.message : ''
  if (code === 'SQLITE_ERROR' && MISSING_SCHEMA.test(message)) {
    return { reason: 'schema', retryable: false, detail: withCode(code, error, missingSchemaHint) }
  }
  const primary = /^SQLITE_[A-Z]+/.exec(code)?.[0] ?? code
  const rule = RULES[code] ?? RULES[primary]
  if (rule === undefined)
    return { reason: 'unknown', retryable: false, detail: withCode(code, error, undefined) }
  return { reason: rule.reason, retryable: rule.retryable, detail: withCode(code, error, rule.hint) }
}

/**
 * Maps what better-sqlite3 throws to a reason and a `retryable` flag. The detail keeps the
 * SQLite code in front of the driver's message, plus a hint for the codes an operator meets
 * (a missing table before `migrate()`, a lock held past the busy timeout).
 */
export const classifySqliteError: ClassifyStorageError = (error) => classify(error, 'did you run migrate()?')

/** {@link classifySqliteError} for `migrate()` itself, where a missing table is the DDL's own failure. */
export const classifySqliteMigrationError: ClassifyStorageError = (error) => classify(error, undefined)
