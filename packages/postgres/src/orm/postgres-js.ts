import type { TransactionSql } from 'postgres'
import type { PostgresQueryHandle } from '../query-handle.js'
import { postgresJsHandle } from './postgres-js-handle.js'

/**
 * The store's `{ tx }` for a postgres.js transaction:
 * `await sql.begin(async (tx) => { ...; await store.outbox.findOrCreate(event, { tx: postgresJsTransaction(tx) }) })`.
 */
export const postgresJsTransaction = (tx: TransactionSql<Record<string, unknown>>): PostgresQueryHandle =>
  postgresJsHandle(tx, 'postgresJsTransaction', 'a postgres.js transaction')
