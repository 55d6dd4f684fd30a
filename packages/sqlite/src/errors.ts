import { StorageError, TxboxError } from '@txbox/core'

/** The adapter name every error message of this package carries. */
export const ADAPTER = 'sqlite'

/** The extended result code better-sqlite3 puts on its `SqliteError` (e.g. `SQLITE_BUSY`). */
export const sqliteErrorCode = (error: unknown): string | undefined => {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined
  const { code } = error as { code: unknown }
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined
}

/** The database is locked by another connection for longer than its busy timeout. */
export const isBusy = (error: unknown): boolean => {
  const code = sqliteErrorCode(error)
  return code !== undefined && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'))
}

/**
 * Runs one repository operation and maps what the driver throws, once, in one place:
 * txbox's own errors pass through, everything else becomes a `StorageError` that keeps the
 * driver error as `cause` and names the SQLite code. The adapter needs no duplicate-key
 * mapping: idempotent inserts use `ON CONFLICT DO NOTHING`, so a constraint error here is
 * a real failure, never an expected outcome.
 */
export const runStorage = async <T>(operation: string, run: () => T): Promise<T> => {
  try {
    return run()
  } catch (error) {
    if (error instanceof TxboxError) throw error
    const code = sqliteErrorCode(error)
    const message = error instanceof Error ? error.message : String(error)
    const hint = isBusy(error) ? ' (the database stayed locked longer than the busy timeout)' : ''
    throw new StorageError(
      ADAPTER,
      operation,
      error,
      code === undefined ? message : `${code}: ${message}${hint}`,
    )
  }
}
