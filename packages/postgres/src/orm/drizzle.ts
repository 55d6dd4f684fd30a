import { ValidationError } from '@txbox/core'
import { isPool } from '../client.js'
import { ADAPTER } from '../errors.js'
import { isPgClient, type PostgresQueryHandle, pgClientHandle, wrongHandle } from '../query-handle.js'
import { postgresJsHandle } from './postgres-js-handle.js'

interface DrizzleLike {
  rollback?: unknown
  transaction?: unknown
  session?: { client?: unknown }
}

const EXPECTED =
  'the `tx` of a Drizzle transaction (`db.transaction(async (tx) => ...)`) on node-postgres or postgres-js'

/**
 * The store's `{ tx }` for a Drizzle transaction on either PostgreSQL driver, `node-postgres`
 * (`drizzle-orm/node-postgres`) or `postgres-js` (`drizzle-orm/postgres-js`):
 * `await db.transaction(async (tx) => { ...; await store.outbox.findOrCreate(event, { tx: drizzleTransaction(tx) }) })`.
 * The store reaches the transaction's connection through Drizzle's session (`tx.session.client`).
 */
export const drizzleTransaction = (tx: object): PostgresQueryHandle => {
  const candidate = tx as DrizzleLike | null
  if (typeof candidate !== 'object' || candidate === null || typeof candidate.transaction !== 'function') {
    throw wrongHandle('drizzleTransaction', EXPECTED, tx)
  }
  const client = candidate.session?.client
  // A transaction has rollback(); the database object does not, and its client is the Pool
  // (or the root postgres.js `sql`): a write there would autocommit.
  if (typeof candidate.rollback !== 'function' || isPool(client)) {
    throw new ValidationError(
      ADAPTER,
      'drizzleTransaction got the Drizzle database itself, not a transaction (it would autocommit the event): ' +
        'pass the `tx` that `db.transaction(async (tx) => ...)` hands its callback',
    )
  }
  if (isPgClient(client)) return pgClientHandle(client, 'a Drizzle transaction (node-postgres)')
  if (typeof client === 'function') {
    return postgresJsHandle(client, 'drizzleTransaction', 'a Drizzle transaction (postgres-js)')
  }
  throw wrongHandle('drizzleTransaction', EXPECTED, client)
}
