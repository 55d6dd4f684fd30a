import { ValidationError } from '@txbox/core'
import type { EntityManager, QueryRunner } from 'typeorm'
import { ADAPTER } from '../errors.js'
import { type PostgresQueryHandle, pinnedConnectionHandle, wrongHandle } from '../query-handle.js'

interface QueryRunnerLike {
  isTransactionActive?: unknown
  isReleased?: unknown
  connect?: () => Promise<unknown>
  connection?: { driver?: { options?: { type?: unknown } } }
}

const EXPECTED =
  'the EntityManager that `dataSource.transaction(async (manager) => ...)` hands its callback, or a QueryRunner after startTransaction()'

const queryRunnerOf = (value: unknown): QueryRunnerLike | undefined => {
  if (typeof value !== 'object' || value === null) return undefined
  const candidate = value as QueryRunnerLike & { queryRunner?: unknown; transaction?: unknown }
  if (typeof candidate.connect === 'function' && 'isTransactionActive' in candidate) return candidate
  // An EntityManager: inside a transaction it carries that transaction's QueryRunner.
  if (typeof candidate.transaction === 'function' && 'connection' in candidate) {
    const runner = candidate.queryRunner
    if (runner === undefined) {
      throw new ValidationError(
        ADAPTER,
        'typeormTransaction got an EntityManager that is not a transaction (dataSource.manager would autocommit the event): ' +
          'pass the manager that `dataSource.transaction(async (manager) => ...)` hands its callback',
      )
    }
    return queryRunnerOf(runner)
  }
  return undefined
}

/**
 * The store's `{ tx }` for a TypeORM transaction on PostgreSQL: the EntityManager of
 * `dataSource.transaction(async (manager) => { ...; await store.outbox.findOrCreate(event, { tx: typeormTransaction(manager) }) })`,
 * or a QueryRunner between `startTransaction()` and `commitTransaction()`. The store's
 * statements run on the QueryRunner's own pg connection.
 */
export const typeormTransaction = (
  managerOrQueryRunner: EntityManager | QueryRunner,
): PostgresQueryHandle => {
  const runner = queryRunnerOf(managerOrQueryRunner)
  if (runner === undefined || typeof runner.connect !== 'function') {
    throw wrongHandle('typeormTransaction', EXPECTED, managerOrQueryRunner)
  }
  const type = runner.connection?.driver?.options?.type
  if (type !== 'postgres') {
    throw new ValidationError(
      ADAPTER,
      `typeormTransaction got a TypeORM transaction on a ${JSON.stringify(type)} DataSource; @txbox/postgres needs type "postgres"`,
    )
  }
  const description = 'a TypeORM transaction'
  const assertOpen = () => {
    if (runner.isReleased === true || runner.isTransactionActive !== true) {
      throw new ValidationError(
        ADAPTER,
        `tx (${description}) is not inside a transaction (never started, or already committed, rolled back or released): ` +
          'enqueue between startTransaction() and commitTransaction(), or inside dataSource.transaction()',
      )
    }
  }
  const connect = runner.connect.bind(runner)
  assertOpen()
  // Connected since its transaction started: `connect` answers the QueryRunner's pg client.
  return pinnedConnectionHandle({ description, session: runner as object, connection: connect, assertOpen })
}
