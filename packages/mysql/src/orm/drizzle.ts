import { describeHandle, ValidationError } from '@txbox/core'
import type { Connection } from 'mysql2/promise'
import { ADAPTER } from '../errors.js'
import { type MySqlQueryHandle, mySqlQueryHandle } from '../query-handle.js'

const SOURCE = 'a Drizzle transaction'

/** What Drizzle's mysql2 transaction holds: a session on the transaction's mysql2/promise connection. */
interface DrizzleTransactionLike {
  rollback?(): unknown
  readonly session?: { readonly client?: unknown; readonly constructor?: { readonly name?: string } }
}

const isPromiseConnection = (client: unknown): client is Connection =>
  typeof client === 'object' &&
  client !== null &&
  typeof (client as Connection).execute === 'function' &&
  typeof (client as Connection).beginTransaction === 'function' &&
  !('getConnection' in client)

/**
 * `{ tx }` for a Drizzle transaction on the `mysql2` driver (`drizzle-orm/mysql2`): txbox's
 * statements run on the transaction's own connection.
 *
 * ```ts
 * await db.transaction(async (tx) => {
 *   await tx.insert(orders).values(order)
 *   await store.outbox.findOrCreate(event, { tx: drizzleTransaction(tx) })
 * })
 * ```
 */
export const drizzleTransaction = (tx: object): MySqlQueryHandle => {
  const value = tx as DrizzleTransactionLike
  const session = typeof value === 'object' && value !== null ? value.session : undefined
  if (session === undefined || typeof session !== 'object')
    throw new ValidationError(
      ADAPTER,
      `drizzleTransaction() needs a Drizzle transaction (the tx of db.transaction()); got ${describeHandle(tx)}`,
    )
  if (typeof value.rollback !== 'function')
    throw new ValidationError(
      ADAPTER,
      'drizzleTransaction() needs a Drizzle transaction, not the database: db.transaction(async (tx) => ... drizzleTransaction(tx))',
    )
  if (!isPromiseConnection(session.client))
    throw new ValidationError(
      ADAPTER,
      `drizzleTransaction() got a transaction of ${describeHandle(session)}, not of drizzle-orm/mysql2 on a connection: use drizzle-orm/mysql2 with a mysql2 pool or connection`,
    )
  const connection = session.client
  // Drizzle keeps no "ended" flag on its transaction: the server is asked.
  return mySqlQueryHandle(SOURCE, async () => ({ connection, open: false }))
}
