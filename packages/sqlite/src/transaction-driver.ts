import { type TransactionDriver, ValidationError } from '@txbox/core'
import type { ConnectionTurns } from './connection-turns.js'
import { ADAPTER } from './errors.js'
import type { SqliteDatabase } from './sqlite-options.js'

/**
 * How `store.transaction` runs on SQLite: it waits for its turn on the connection (see
 * {@link ConnectionTurns}), then `BEGIN IMMEDIATE`, which takes the database's write lock
 * at once (waiting up to the busy timeout for another connection or process), so nothing
 * the function reads can change under it and COMMIT cannot fail on a lock. The "connection"
 * is the caller's own `Database`: it is never closed, only given back to the other calls.
 */
export const sqliteTransactionDriver = (
  db: SqliteDatabase,
  turns: ConnectionTurns,
): TransactionDriver<SqliteDatabase> => ({
  begin: async () => {
    await turns.beginTransaction()
    try {
      if (db.inTransaction) {
        throw new ValidationError(
          ADAPTER,
          'store.transaction() cannot begin: a transaction it did not open is already open on this connection (a BEGIN of your own, or a Knex/Kysely/Drizzle transaction). Commit or roll that back first, or write inside it with { tx }',
        )
      }
      db.exec('BEGIN IMMEDIATE')
    } catch (error) {
      turns.endTransaction()
      throw error
    }
    return db
  },
  commit: async () => {
    db.exec('COMMIT')
  },
  // After a failed COMMIT SQLite may keep the transaction open, or may have ended it already.
  rollback: async () => {
    if (db.inTransaction) db.exec('ROLLBACK')
  },
  release: () => {
    // Even if ROLLBACK failed, the next caller must not inherit this transaction.
    try {
      if (db.inTransaction && db.open) db.exec('ROLLBACK')
    } finally {
      turns.endTransaction()
    }
  },
})
