import { createHash } from 'node:crypto'
import { ValidationError } from '@txbox/core'
import type { ClientBase, Pool, PoolClient, QueryResult, QueryResultRow } from 'pg'
import { ADAPTER } from './errors.js'

/**
 * The transaction handle accepted as `{ tx }`: a `PoolClient` (or a `Client`) on which the
 * caller has run `BEGIN`. The statement runs on that connection, so it commits or rolls back
 * with the caller's own writes.
 */
export type PostgresTransaction = ClientBase

/** Anything that can run a parameterized query: the pool, or the caller's client. */
export type Queryable = Pool | ClientBase

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

/** Runs one parameterized statement of a store on the pool or on the caller's client. */
export type StatementRunner = <R extends QueryResultRow = QueryResultRow>(
  db: Queryable,
  text: string,
  values: unknown[],
) => Promise<QueryResult<R>>

/**
 * The runner of a store. `prepared`: each statement is a named prepared statement, parsed and
 * planned once per connection instead of on every call (the enqueue CTE's planning was a
 * third of its cost); off for a pooler that does not keep prepared statements per client
 * (PgBouncer in transaction mode before 1.21 without `max_prepared_statements`).
 */
export const statementRunner =
  (prepared: boolean): StatementRunner =>
  <R extends QueryResultRow>(db: Queryable, text: string, values: unknown[]) =>
    prepared
      ? (db as Pool).query<R>({ name: statementName(text), text, values })
      : (db as Pool).query<R>(text, values)

/**
 * Runs a query string of several statements (the simple protocol: no bind parameters) in
 * one round trip and one implicit transaction; answers the rows of the last statement.
 */
export const queryStatements = async <R extends QueryResultRow>(pool: Pool, text: string): Promise<R[]> => {
  const results = (await pool.query<R>(text)) as unknown as QueryResult<R>[] | QueryResult<R>
  return Array.isArray(results) ? (results.at(-1)?.rows ?? []) : results.rows
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
 * Checks a `{ tx }` handle at run time. Passing the Pool by mistake would silently
 * autocommit the event outside the caller's transaction, so it is refused.
 */
export const transactionHandle = (tx: unknown): PostgresTransaction | undefined => {
  if (tx === undefined) return undefined
  if (isPool(tx)) {
    throw new ValidationError(
      ADAPTER,
      'tx must be the client of an open transaction (pool.connect() then BEGIN), not the Pool itself',
    )
  }
  if (typeof tx !== 'object' || tx === null || typeof (tx as ClientBase).query !== 'function') {
    throw new ValidationError(ADAPTER, 'tx must be a pg PoolClient or Client inside BEGIN')
  }
  // pg tracks the server's transaction status ('I' idle, 'T' in a transaction, 'E' failed).
  // A client outside BEGIN would autocommit the write, which is never what `{ tx }` means.
  const status = (tx as Partial<Pick<ClientBase, 'getTransactionStatus'>>).getTransactionStatus?.()
  if (status === 'I') {
    throw new ValidationError(ADAPTER, 'tx is not inside a transaction: run BEGIN on the client first')
  }
  return tx as PostgresTransaction
}

/**
 * Runs `fn` inside BEGIN on a client of `pool`, then COMMIT (or ROLLBACK when `rollback`,
 * or when `fn` throws; its error is the one thrown). A client whose BEGIN, COMMIT or
 * ROLLBACK failed is destroyed instead of going back to the pool: its session state is
 * unknown.
 */
export const withTransaction = async <T>(
  pool: Pool,
  fn: (client: PoolClient) => Promise<T>,
  options: { readonly rollback?: boolean | undefined } = {},
): Promise<T> => {
  const client = await pool.connect()
  let broken: Error | undefined
  const run = async (command: 'BEGIN' | 'COMMIT' | 'ROLLBACK') => {
    try {
      await client.query(command)
    } catch (error) {
      broken = error instanceof Error ? error : new Error(String(error))
      throw error
    }
  }
  try {
    await run('BEGIN')
    let result: T
    try {
      result = await fn(client)
    } catch (error) {
      // A failed ROLLBACK only means the client is destroyed (marked above); the caller
      // needs `fn`'s error, which says what went wrong.
      await run('ROLLBACK').catch(() => undefined)
      throw error
    }
    await run(options.rollback ? 'ROLLBACK' : 'COMMIT')
    return result
  } finally {
    client.release(broken)
  }
}
