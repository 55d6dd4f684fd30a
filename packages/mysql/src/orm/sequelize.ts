import { describeHandle, ValidationError } from '@txbox/core'
import type { Connection } from 'mysql2/promise'
import type { Transaction } from 'sequelize'
import { ADAPTER } from '../errors.js'
import { type MySqlQueryHandle, mySqlQueryHandle } from '../query-handle.js'

const SOURCE = 'a Sequelize transaction'

/** What a Sequelize transaction keeps: its end state and the dialect's driver connection. */
interface SequelizeTransactionLike {
  readonly finished?: unknown
  readonly connection?: unknown
  readonly sequelize?: { getDialect?(): unknown }
}

/**
 * `{ tx }` for a Sequelize transaction on the `mysql` dialect (the mysql2 package): txbox's
 * statements run on the transaction's own connection.
 *
 * ```ts
 * await sequelize.transaction(async (t) => {
 *   await Order.create(order, { transaction: t })
 *   await store.outbox.findOrCreate(event, { tx: sequelizeTransaction(t) })
 * })
 * ```
 */
export const sequelizeTransaction = (transaction: Transaction): MySqlQueryHandle => {
  const value = transaction as unknown as SequelizeTransactionLike
  if (
    typeof value !== 'object' ||
    value === null ||
    typeof value.sequelize?.getDialect !== 'function' ||
    typeof (value as { commit?: unknown }).commit !== 'function'
  )
    throw new ValidationError(
      ADAPTER,
      `sequelizeTransaction() needs a Sequelize transaction (the t of sequelize.transaction()); got ${describeHandle(transaction)}`,
    )
  const dialect = value.sequelize.getDialect()
  if (dialect !== 'mysql')
    throw new ValidationError(
      ADAPTER,
      `sequelizeTransaction() got a transaction of the Sequelize "${String(dialect)}" dialect; txbox's MySQL store needs dialect "mysql" (mysql2; it also talks to MariaDB)`,
    )
  return mySqlQueryHandle(SOURCE, async () => {
    if (value.finished !== undefined)
      throw new ValidationError(
        ADAPTER,
        `tx (${SOURCE}) has already ended (${String(value.finished)}): write inside the transaction, before it commits`,
      )
    const raw = value.connection as { promise?: () => Connection } | undefined
    if (typeof raw?.promise !== 'function')
      throw new ValidationError(ADAPTER, `tx (${SOURCE}) has no mysql2 connection yet: it was never begun`)
    return { connection: raw.promise(), open: true }
  })
}
