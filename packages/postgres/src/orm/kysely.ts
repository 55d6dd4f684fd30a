import { ValidationError } from '@txbox/core'
import { CompiledQuery, type Transaction } from 'kysely'
import { ADAPTER } from '../errors.js'
import { type PostgresQueryHandle, postgresQueryHandle, wrongHandle } from '../query-handle.js'

/** What Kysely throws before running a query on a transaction that has ended. */
const ENDED = /^Transaction is already (committed|rolled back)$/

interface KyselyTransactionLike {
  isTransaction?: unknown
  isCommitted?: unknown
  isRolledBack?: unknown
  executeQuery?: (query: CompiledQuery) => Promise<{ rows: unknown[]; numAffectedRows?: bigint }>
}

/**
 * The store's `{ tx }` for a Kysely transaction on PostgreSQL (any Postgres dialect):
 * `await db.transaction().execute(async (trx) => { ...; await store.outbox.findOrCreate(event, { tx: kyselyTransaction(trx) }) })`.
 * A controlled transaction (`db.startTransaction().execute()`) works too.
 */
export const kyselyTransaction = <DB>(trx: Transaction<DB>): PostgresQueryHandle => {
  const candidate = trx as unknown as KyselyTransactionLike | null
  if (typeof candidate !== 'object' || candidate === null || typeof candidate.executeQuery !== 'function') {
    throw wrongHandle(
      'kyselyTransaction',
      'the `trx` of a Kysely transaction (`db.transaction().execute(async (trx) => ...)`)',
      trx,
    )
  }
  if (candidate.isTransaction !== true) {
    throw new ValidationError(
      ADAPTER,
      'kyselyTransaction got the Kysely instance itself, not a transaction (it would autocommit the event): ' +
        'pass the `trx` that `db.transaction().execute(async (trx) => ...)` hands its callback',
    )
  }
  const executeQuery = candidate.executeQuery.bind(trx)
  return postgresQueryHandle({
    description: 'a Kysely transaction',
    session: trx,
    // Kysely (0.28) refuses to run a query on a transaction that ended (see ENDED below).
    checkOpenOnServer: false,
    assertOpen: () => {
      if (candidate.isCommitted === true || candidate.isRolledBack === true) {
        throw new ValidationError(
          ADAPTER,
          'tx (a Kysely transaction) is already committed or rolled back: enqueue before commit()',
        )
      }
    },
    query: async <R>(statement: { text: string; values: readonly unknown[] }) => {
      let result: Awaited<ReturnType<typeof executeQuery>>
      try {
        result = await executeQuery(CompiledQuery.raw(statement.text, [...statement.values]))
      } catch (error) {
        // Kysely throws this synchronously, before the query reaches the connection.
        if (error instanceof Error && ENDED.test(error.message)) {
          throw new ValidationError(
            ADAPTER,
            'tx (a Kysely transaction) is already committed or rolled back: enqueue inside its transaction callback',
            { cause: error },
          )
        }
        throw error
      }
      const affected = result.numAffectedRows
      return {
        rows: result.rows as R[],
        rowCount: affected === undefined ? result.rows.length : Number(affected),
      }
    },
  })
}
