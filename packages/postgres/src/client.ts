import { createHash } from 'node:crypto'
import { describeHandle, ValidationError } from '@txbox/core'
import type { ClientBase, Pool, PoolClient, QueryResult, QueryResultRow } from 'pg'
import { ADAPTER } from './errors.js'
import {
  isPgClient,
  isPostgresQueryHandle,
  type PostgresQueryHandle,
  type PostgresRows,
  pgClientHandle,
} from './query-handle.js'
import { checkTransactionTarget } from './transaction-check.js'
import { PostgresTransactionDriver } from './transaction-driver.js'

/**
 * The transaction handle accepted as `{ tx }`: a `PoolClient` (or a `Client`) on which the
 * caller has run `BEGIN`, or the handle of an integration (`knexTransaction(trx)`, ...). The
 * statement runs on that transaction's connection, so it commits or rolls back with the
 * caller's own writes.
 */
export type PostgresTransaction = ClientBase | PostgresQueryHandle

/** Where a statement runs: the pool (autocommit), or a caller's transaction. */
export type Queryable = Pool | PostgresQueryHandle

/** The prepared-statement name of each statement text, computed once per text. */
const statementNames = new Map<string, string>()

/**
 * The name a statement is prepared under: derived from its whole text (schema and prefix
 * included), so two stores on one pool, or two versions of a statement, never share a name.
 */
export const statementName = (text: string): string => {
  let name = statementNames.get(text)
  if (name === undefined) {
    name = `txbox_${createHash('sha256').update(text).digest('hex').slice(0, 40)}`
    statementNames.set(text, name)
  }
  return name
}

/** Runs one parameterized statement of a store on the pool or on the caller's transaction. */
export type StatementRunner = <R extends QueryResultRow = QueryResultRow>(
  db: Queryable,
  text: string,
  values: unknown[],
) => Promise<PostgresRows<R>>

/**
 * The runner of a store. `prepared`: each statement is a named prepared statement, parsed and
 * planned once per connection instead of on every call (the enqueue CTE's planning was a
 * third of its cost); off for a pooler that does not keep prepared statements per client
 * (PgBouncer in transaction mode before 1.21 without `max_prepared_statements`).
 */
export const statementRunner =
  (pool: Pool, prepared: boolean): StatementRunner =>
  async <R extends QueryResultRow>(db: Queryable, text: string, values: unknown[]) => {
    const name = prepared ? statementName(text) : undefined
    if (isPostgresQueryHandle(db)) {
      await checkTransactionTarget(pool, db)
      return db.query<R>({ text, values, name })
    }
    return name === undefined ? db.query<R>(text, values) : db.query<R>({ name, text, values })
  }

/**
 * Runs a query string of several statements (the simple protocol: no bind parameters) in
 * one round trip and one implicit transaction; answers each statement's result, in order.
 */
export const queryStatements = async (pool: Pool, text: string): Promise<QueryResult[]> => {
  const results = (await pool.query(text)) as unknown as QueryResult[] | QueryResult
  return Array.isArray(results) ? results : [results]
}

/** True for a pg Pool (not a client checked out of it). */
export const isPool = (value: unknown): value is Pool =>
  typeof value === 'object' &&
  value !== null &&
  typeof (value as Pool).connect === 'function' &&
  typeof (value as Pool).query === 'function' &&
  'totalCount' in value &&
  'idleCount' in value

/**
 * Checks a `{ tx }` handle before any I/O and answers it as a query handle. Passing the Pool
 * by mistake would silently autocommit the event outside the caller's transaction, so it is
 * refused, as is a client outside BEGIN, or an integration's handle whose transaction ended.
 */
export function transactionHandle(tx: PostgresTransaction): PostgresQueryHandle
export function transactionHandle(tx: PostgresTransaction | undefined): PostgresQueryHandle | undefined
export function transactionHandle(tx: PostgresTransaction | undefined): PostgresQueryHandle | undefined {
  if (tx === undefined) return undefined
  if (isPool(tx)) {
    throw new ValidationError(
      ADAPTER,
      'tx must be the client of an open transaction (pool.connect() then BEGIN), not the Pool itself',
    )
  }
  const handle = isPostgresQueryHandle(tx) ? tx : isPgClient(tx) ? pgClientHandle(tx) : undefined
  if (handle === undefined) {
    throw new ValidationError(
      ADAPTER,
      `tx must be a pg PoolClient or Client inside BEGIN, or the handle of an integration ` +
        `(e.g. knexTransaction(trx) from @txbox/postgres/knex); got ${describeHandle(tx)}`,
    )
  }
  handle.assertOpen()
  return handle
}

/**
 * Runs `fn` inside BEGIN on a client of `pool`, then COMMIT (or ROLLBACK when `rollback`,
 * or when `fn` throws; its error is the one thrown). A client whose BEGIN, COMMIT or
 * ROLLBACK failed is destroyed instead of going back to the pool: its session state is
 * unknown. The same driver as `store.transaction`'s.
 */
export const withTransaction = <T>(
  pool: Pool,
  fn: (client: PoolClient) => Promise<T>,
  options: { readonly rollback?: boolean | undefined } = {},
): Promise<T> => new PostgresTransactionDriver(pool).run(fn, options)
