import { PayloadTooLargeError, StorageError, TxboxError, utf8Bytes } from '@txbox/core'

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

/**
 * SQLite's default SQLITE_MAX_LENGTH: no string, and no row, may exceed 1,000,000,000 bytes.
 * A JavaScript string can: a payload of 400 million three-byte characters is 1.2 GB as UTF-8.
 */
export const SQLITE_MAX_LENGTH = 1_000_000_000

/** Room left in a row for the integer columns, the small text columns and SQLite's record header. */
const ROW_OVERHEAD_BYTES = 1024

/**
 * Throws `PayloadTooLargeError` for an event whose row SQLite cannot store (instead of the
 * driver's SQLITE_TOOBIG once the transaction has begun). Counting UTF-8 bytes costs a pass
 * over the text, so it is done only when the row could be that large: UTF-8 takes at most
 * three bytes per UTF-16 code unit.
 */
export const assertStorable = (
  event: {
    eventId: string
    subject: string
    payload: string
    headers?: string | undefined
    stream?: string | undefined
  },
  limitBytes = SQLITE_MAX_LENGTH,
): void => {
  const texts = [event.eventId, event.subject, event.payload, event.headers ?? '', event.stream ?? '']
  const units = texts.reduce((sum, text) => sum + text.length, 0)
  if (units * 3 + ROW_OVERHEAD_BYTES <= limitBytes) return
  const bytes = texts.reduce((sum, text) => sum + utf8Bytes(text), ROW_OVERHEAD_BYTES)
  if (bytes > limitBytes) throw new PayloadTooLargeError(ADAPTER, event.eventId, bytes, limitBytes)
}
