import type { Pool, QueryResult, QueryResultRow } from 'pg'
import type { Queryable } from './postgres-options.js'
import { CLEANUP_BATCH } from './sql.js'

/** Runs one parameterized statement on the pool or on the caller's client. */
export const query = <R extends QueryResultRow = QueryResultRow>(
  db: Queryable,
  text: string,
  values: unknown[],
): Promise<QueryResult<R>> => (db as Pool).query<R>(text, values)

/**
 * Runs a bounded DELETE (at most CLEANUP_BATCH rows, each statement its own short
 * transaction) until a batch comes back short; returns the total deleted.
 */
export const deleteInBatches = async (pool: Pool, text: string, cutoff: Date): Promise<number> => {
  let total = 0
  for (;;) {
    const result = await query(pool, text, [cutoff])
    const deleted = result.rowCount ?? 0
    total += deleted
    if (deleted < CLEANUP_BATCH) return total
  }
}
