import { StorageError, withStorageErrors } from '@txbox/core'

/** The adapter name in every error message: `[txbox] [redis] ...`. */
export const ADAPTER = 'redis'

/**
 * Runs one Redis call (or a short sequence) of a repository operation and wraps whatever
 * ioredis throws (connection errors, script errors, `WRONGTYPE` on a foreign key) in a
 * `StorageError` with the original as `cause`. There is no duplicate-key error to map:
 * idempotency is decided inside the scripts, not by a failed insert.
 */
export const storage = <T>(operation: string, run: () => Promise<T>): Promise<T> =>
  withStorageErrors(ADAPTER, operation, run)

/** A reply that does not have the shape the script returns: the keys hold foreign data. */
export const unexpectedReply = (operation: string, reply: unknown): StorageError =>
  new StorageError(
    ADAPTER,
    operation,
    reply,
    `unexpected reply from Redis: ${JSON.stringify(reply)?.slice(0, 200)}`,
  )

/** What `exec()` of an ioredis MULTI resolves to: one `[error, result]` pair per command, or null when aborted by WATCH. */
export type ExecResult = [error: Error | null, result: unknown][] | null

/**
 * Runs `exec()` on a MULTI and throws when Redis applied it only partly. Redis has no
 * rollback: when one queued command fails at EXEC time (a script error, WRONGTYPE), the
 * others are still applied. This turns that into a `StorageError` (the first failure as
 * `cause`) instead of a result array the caller might not inspect. A transaction aborted by
 * WATCH (exec resolves to null) is reported the same way.
 */
export const execTransaction = async (multi: {
  exec(): Promise<ExecResult>
}): Promise<[error: Error | null, result: unknown][]> => {
  const results = await storage('transaction.exec', () => multi.exec())
  if (results === null) {
    throw new StorageError(
      ADAPTER,
      'transaction.exec',
      null,
      'the transaction was aborted (a WATCHed key changed)',
    )
  }
  const failed = results.filter(([error]) => error !== null)
  if (failed.length > 0) {
    const first = failed[0]?.[0]
    throw new StorageError(
      ADAPTER,
      'transaction.exec',
      first,
      `${failed.length} of ${results.length} queued commands failed; the others were applied (Redis has no rollback): ${first?.message}`,
    )
  }
  return results
}
