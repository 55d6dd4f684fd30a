import { describeHandle, ValidationError } from '@txbox/core'
import type { Knex } from 'knex'
import type { Connection } from 'mysql2/promise'
import { ADAPTER } from '../errors.js'
import { type MySqlQueryHandle, mySqlQueryHandle } from '../query-handle.js'

const SOURCE = 'a Knex transaction'

/** What Knex keeps about its transaction: its own state and the client that holds its connection. */
interface KnexTransactionLike {
  readonly isTransaction?: unknown
  isCompleted?(): boolean
  readonly client?: { readonly driverName?: unknown; acquireConnection?(): Promise<unknown> }
}

/**
 * `{ tx }` for a Knex transaction on the `mysql2` client: txbox's statements run on the
 * transaction's own connection, so they commit and roll back with it.
 *
 * ```ts
 * await knex.transaction(async (trx) => {
 *   await trx('orders').insert(order)
 *   await store.outbox.findOrCreate(event, { tx: knexTransaction(trx) })
 * })
 * ```
 */
export const knexTransaction = (trx: Knex.Transaction): MySqlQueryHandle => {
  const value = trx as unknown as KnexTransactionLike
  const isKnex = typeof trx === 'function' && typeof value.client === 'object' && value.client !== null
  if (!isKnex || value.isTransaction !== true || typeof value.isCompleted !== 'function') {
    throw new ValidationError(
      ADAPTER,
      isKnex
        ? 'knexTransaction() needs a Knex transaction, not the Knex instance: knex.transaction(async (trx) => ... knexTransaction(trx))'
        : `knexTransaction() needs a Knex transaction (the trx of knex.transaction()); got ${describeHandle(trx)}`,
    )
  }
  const driver = value.client?.driverName
  if (driver !== 'mysql2')
    throw new ValidationError(
      ADAPTER,
      `knexTransaction() got a Knex transaction of the ${String(driver)} client; txbox's MySQL store needs Knex's mysql2 client (client: 'mysql2')`,
    )
  return mySqlQueryHandle(SOURCE, async () => {
    if (value.isCompleted?.())
      throw new ValidationError(
        ADAPTER,
        `tx (${SOURCE}) has already been committed or rolled back: write inside knex.transaction()'s callback, before it returns`,
      )
    // A transaction's client hands out the transaction's one connection: mysql2's callback
    // connection, whose promise() view runs on the same session.
    const raw = (await value.client?.acquireConnection?.()) as { promise(): Connection }
    return { connection: raw.promise(), open: true }
  })
}
