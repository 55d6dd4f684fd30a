import { ValidationError } from '@txbox/core'
import type { Transaction } from 'sequelize'
import { ADAPTER } from '../errors.js'
import { isPgClient, type PostgresQueryHandle, pgClientHandle, wrongHandle } from '../query-handle.js'

interface SequelizeTransactionLike {
  commit?: unknown
  rollback?: unknown
  finished?: unknown
  connection?: unknown
  sequelize?: { getDialect?: () => string }
}

/**
 * The store's `{ tx }` for a Sequelize transaction on PostgreSQL:
 * `await sequelize.transaction(async (t) => { ...; await store.outbox.findOrCreate(event, { tx: sequelizeTransaction(t) }) })`
 * (or an unmanaged `await sequelize.transaction()` before its commit). The store's statements
 * run on the transaction's own pg connection.
 */
export const sequelizeTransaction = (transaction: Transaction): PostgresQueryHandle => {
  const candidate = transaction as unknown as SequelizeTransactionLike | null
  const root = candidate as { transaction?: unknown; getDialect?: unknown } | null
  if (typeof root?.transaction === 'function' && typeof root.getDialect === 'function') {
    throw new ValidationError(
      ADAPTER,
      'sequelizeTransaction got the Sequelize instance itself, not a transaction (it would autocommit the event): ' +
        'pass the `t` that `sequelize.transaction(async (t) => ...)` hands its callback',
    )
  }
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    typeof candidate.commit !== 'function' ||
    typeof candidate.rollback !== 'function' ||
    typeof candidate.sequelize?.getDialect !== 'function'
  ) {
    throw wrongHandle(
      'sequelizeTransaction',
      'the Transaction that `sequelize.transaction(async (t) => ...)` hands its callback',
      transaction,
    )
  }
  const dialect = candidate.sequelize.getDialect()
  if (dialect !== 'postgres') {
    throw new ValidationError(
      ADAPTER,
      `sequelizeTransaction got a Sequelize transaction on ${JSON.stringify(dialect)}; @txbox/postgres needs the "postgres" dialect`,
    )
  }
  const description = 'a Sequelize transaction'
  const assertFinished = () => {
    if (candidate.finished !== undefined) {
      throw new ValidationError(
        ADAPTER,
        `tx (${description}) is already committed or rolled back (${String(candidate.finished)}): enqueue inside its transaction callback`,
      )
    }
  }
  assertFinished()
  const connection = candidate.connection
  if (!isPgClient(connection)) {
    throw new ValidationError(
      ADAPTER,
      `tx (${description}) has no pg connection: pass a transaction that has begun (await sequelize.transaction())`,
    )
  }
  return pgClientHandle(connection, description, assertFinished)
}
