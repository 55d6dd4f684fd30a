import { describeHandle, ValidationError } from '@txbox/core'
import { type Kysely, sql, type Transaction } from 'kysely'
import { CONNECTION_FUNCTION, connectionById } from '../connection-identity.js'
import { ADAPTER } from '../errors.js'
import type { SqliteDatabase } from '../sqlite-options.js'
import { openTransactionOn } from './handles.js'

/**
 * The better-sqlite3 `Database` under an open Kysely transaction, to pass as `{ tx }`:
 * `store.outbox.findOrCreate(event, { tx: await kyselyTransaction(trx) })`. Kysely keeps
 * its connection private, so this asks the connection itself (one `SELECT` of a function
 * every txbox SQLite store registers on its `Database`): a transaction on a connection no
 * store was created on, or no longer open, is refused before any write.
 */
export const kyselyTransaction = async <DB>(trx: Transaction<DB>): Promise<SqliteDatabase> => {
  const handle = trx as Partial<Kysely<DB>> | null
  if (
    typeof handle !== 'object' ||
    handle === null ||
    typeof handle.getExecutor !== 'function' ||
    handle.isTransaction !== true
  ) {
    throw new ValidationError(
      ADAPTER,
      `expected a Kysely transaction (the trx of db.transaction().execute(...)); got ${
        handle !== null && typeof handle === 'object' && handle.isTransaction === false
          ? 'a Kysely instance outside a transaction'
          : describeHandle(trx)
      }`,
    )
  }
  let id: unknown
  try {
    const result = await sql<{ id: unknown }>`select ${sql.raw(CONNECTION_FUNCTION)}() as id`.execute(trx)
    id = result.rows[0]?.id
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    throw new ValidationError(
      ADAPTER,
      /no such function|does not exist/i.test(message)
        ? "the Kysely transaction does not run on the store's connection: give Kysely the same better-sqlite3 Database (new SqliteDialect({ database: db })) that the store was created on"
        : `the Kysely transaction cannot run a query (already committed or rolled back?): ${message}`,
      { cause: error },
    )
  }
  const db = connectionById(id)
  if (db === undefined) {
    throw new ValidationError(ADAPTER, 'the Kysely transaction runs on a connection that is closed')
  }
  return openTransactionOn(db, 'the Kysely transaction')
}
