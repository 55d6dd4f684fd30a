import { repeatInBatches } from '@txbox/core'
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
export const deleteInBatches = (pool: Pool, text: string, cutoff: Date): Promise<number> =>
  repeatInBatches(CLEANUP_BATCH, async () => (await query(pool, text, [cutoff])).rowCount ?? 0)
