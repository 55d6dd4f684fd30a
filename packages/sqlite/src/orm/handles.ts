import { ValidationError } from '@txbox/core'
import { ADAPTER } from '../errors.js'
import type { SqliteDatabase } from '../sqlite-options.js'

/** better-sqlite3's `Database`, told apart from node:sqlite, sqlite3 and libsql by its members. */
export const isBetterSqliteDatabase = (value: unknown): value is SqliteDatabase => {
  if (typeof value !== 'object' || value === null) return false
  const db = value as Partial<Record<'prepare' | 'pragma' | 'inTransaction' | 'open', unknown>>
  return (
    typeof db.prepare === 'function' &&
    typeof db.pragma === 'function' &&
    typeof db.inTransaction === 'boolean' &&
    typeof db.open === 'boolean'
  )
}

/** The connection of an ORM transaction, refused unless a transaction is open on it now. */
export const openTransactionOn = (db: SqliteDatabase, what: string): SqliteDatabase => {
  if (!db.open) {
    throw new ValidationError(ADAPTER, `${what} runs on a closed better-sqlite3 Database`)
  }
  if (!db.inTransaction) {
    throw new ValidationError(
      ADAPTER,
      `${what} has no open transaction on its connection (never begun, or already committed or rolled back): call txbox inside the transaction's callback`,
    )
  }
  return db
}
