import { ValidationError } from '@txbox/core'
import { ADAPTER } from '../errors.js'
import { type PostgresQueryHandle, pinnedConnectionHandle, wrongHandle } from '../query-handle.js'

interface KnexTransactionLike {
  isTransaction?: unknown
  isCompleted?: () => boolean
  client?: { driverName?: unknown; dialect?: unknown; acquireConnection?: () => Promise<unknown> }
}

/**
 * The handle of a Knex transaction (`integration` and `description` name who handed it out:
 * Knex itself, or MikroORM). The store's statements run on the transaction's own pg
 * connection, as prepared statements when the store prepares them.
 */
export const knexHandle = (trx: unknown, integration: string, description: string): PostgresQueryHandle => {
  const candidate = trx as KnexTransactionLike | null
  if (
    (typeof trx !== 'function' && typeof trx !== 'object') ||
    candidate === null ||
    typeof candidate.client?.acquireConnection !== 'function'
  ) {
    throw wrongHandle(
      integration,
      'the `trx` of a Knex transaction (`knex.transaction(async (trx) => ...)`)',
      trx,
    )
  }
  if (candidate.isTransaction !== true || typeof candidate.isCompleted !== 'function') {
    throw new ValidationError(
      ADAPTER,
      `${integration} got the Knex instance itself, not a transaction (it would autocommit the event): ` +
        'pass the `trx` that `knex.transaction(async (trx) => ...)` hands its callback',
    )
  }
  const driver = candidate.client.driverName
  if (driver !== 'pg') {
    throw new ValidationError(
      ADAPTER,
      `${integration} got ${description} on the ${JSON.stringify(driver)} driver; @txbox/postgres needs Knex's "pg" client`,
    )
  }
  const isCompleted = candidate.isCompleted.bind(trx)
  const acquire = candidate.client.acquireConnection.bind(candidate.client)
  const assertOpen = () => {
    if (isCompleted()) {
      throw new ValidationError(
        ADAPTER,
        `tx (${description}) is already committed or rolled back: enqueue inside its transaction callback`,
      )
    }
  }
  // A transaction's client answers its one connection (Knex pins it for the transaction).
  return pinnedConnectionHandle({ description, session: trx as object, connection: acquire, assertOpen })
}
