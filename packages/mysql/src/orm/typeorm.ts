import { describeHandle, ValidationError } from '@txbox/core'
import type { Connection } from 'mysql2/promise'
import type { EntityManager, QueryRunner } from 'typeorm'
import { ADAPTER } from '../errors.js'
import { type MySqlQueryHandle, mySqlQueryHandle } from '../query-handle.js'

const SOURCE = 'a TypeORM transaction'

/** What TypeORM's MySQL query runner keeps: its state and its driver connection. */
interface QueryRunnerLike {
  readonly isTransactionActive?: unknown
  readonly isReleased?: unknown
  readonly databaseConnection?: unknown
  readonly connection?: { readonly options?: { readonly type?: unknown } }
}

const runnerOf = (value: unknown): QueryRunnerLike => {
  if (typeof value !== 'object' || value === null)
    throw new ValidationError(
      ADAPTER,
      `typeormTransaction() needs the EntityManager of dataSource.transaction() or a QueryRunner; got ${describeHandle(value)}`,
    )
  if ('isTransactionActive' in value) return value as QueryRunnerLike
  if ('queryRunner' in value) {
    const runner = (value as { queryRunner?: unknown }).queryRunner
    if (typeof runner === 'object' && runner !== null) return runner as QueryRunnerLike
    throw new ValidationError(
      ADAPTER,
      'typeormTransaction() got an EntityManager outside a transaction (dataSource.manager): pass the manager of dataSource.transaction(async (manager) => ...)',
    )
  }
  throw new ValidationError(
    ADAPTER,
    `typeormTransaction() needs the EntityManager of dataSource.transaction() or a QueryRunner; got ${describeHandle(value)}`,
  )
}

/**
 * `{ tx }` for a TypeORM transaction on MySQL / MariaDB (the `mysql2` package): the
 * EntityManager of `dataSource.transaction()` or a QueryRunner after `startTransaction()`.
 * txbox's statements run on the runner's own connection.
 *
 * ```ts
 * await dataSource.transaction(async (manager) => {
 *   await manager.save(order)
 *   await store.outbox.findOrCreate(event, { tx: typeormTransaction(manager) })
 * })
 * ```
 */
export const typeormTransaction = (managerOrRunner: EntityManager | QueryRunner): MySqlQueryHandle => {
  const runner = runnerOf(managerOrRunner)
  const type = runner.connection?.options?.type
  if (type !== 'mysql' && type !== 'mariadb')
    throw new ValidationError(
      ADAPTER,
      `typeormTransaction() got a transaction of a TypeORM "${String(type)}" data source; txbox's MySQL store needs type "mysql" or "mariadb"`,
    )
  return mySqlQueryHandle(SOURCE, async () => {
    if (runner.isReleased === true || runner.isTransactionActive !== true)
      throw new ValidationError(
        ADAPTER,
        `tx (${SOURCE}) is not inside a transaction: it was never started (queryRunner.startTransaction()) or was already committed, rolled back or released`,
      )
    const raw = runner.databaseConnection as { promise?: () => Connection } | undefined
    if (typeof raw?.promise !== 'function')
      throw new ValidationError(
        ADAPTER,
        `tx (${SOURCE}) runs on the mysql package, not mysql2: install mysql2 (TypeORM then prefers it) or set connectorPackage: 'mysql2'`,
      )
    return { connection: raw.promise(), open: true }
  })
}
