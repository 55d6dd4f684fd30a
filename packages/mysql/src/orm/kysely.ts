import { describeHandle, ValidationError } from '@txbox/core'
import { sql, type Transaction } from 'kysely'
import type { Connection, Pool } from 'mysql2/promise'
import { ADAPTER } from '../errors.js'
import { type MySqlQueryHandle, mySqlQueryHandle } from '../query-handle.js'

const SOURCE = 'a Kysely transaction'

/** The mysql2 core pool under a mysql2/promise pool, as far as finding a connection needs it. */
interface CorePool {
  readonly _allConnections?: { toArray(): { readonly threadId: number; promise(): Connection }[] }
}

/**
 * `{ tx }` for a Kysely transaction on `MysqlDialect`. Kysely keeps its connection private,
 * so txbox finds it by its server thread id among the store's pool: build the dialect on the
 * store's pool (its callback core, `pool.pool`), and txbox's statements run on the
 * transaction's own connection.
 *
 * ```ts
 * const pool = createPool({ uri, charset: 'utf8mb4_bin' })
 * const store = createMySqlStore({ pool })
 * const db = new Kysely<DB>({ dialect: new MysqlDialect({ pool: pool.pool }) })
 * await db.transaction().execute(async (trx) => {
 *   await trx.insertInto('orders').values(order).execute()
 *   await store.outbox.findOrCreate(event, { tx: kyselyTransaction(trx) })
 * })
 * ```
 */
// biome-ignore lint/suspicious/noExplicitAny: any database schema fits
export const kyselyTransaction = (trx: Transaction<any>): MySqlQueryHandle => {
  const value = trx as unknown as { isTransaction?: unknown; selectFrom?: unknown; transaction?: unknown }
  if (typeof value !== 'object' || value === null || typeof value.selectFrom !== 'function')
    throw new ValidationError(
      ADAPTER,
      `kyselyTransaction() needs a Kysely transaction (the trx of db.transaction().execute()); got ${describeHandle(trx)}`,
    )
  if (value.isTransaction !== true)
    throw new ValidationError(
      ADAPTER,
      'kyselyTransaction() needs a Kysely transaction, not the Kysely instance: db.transaction().execute(async (trx) => ... kyselyTransaction(trx))',
    )
  return mySqlQueryHandle(SOURCE, async (pool: Pool) => {
    const { rows } = await sql<{ id: number | string }>`SELECT CONNECTION_ID() AS id`
      .execute(trx)
      .catch((error: unknown) => {
        // Kysely's own guard on a finished transaction, before anything reaches the server.
        const message = error instanceof Error ? error.message : ''
        if (/^Transaction is already (committed|rolled back)$/.test(message))
          throw new ValidationError(
            ADAPTER,
            `tx (${SOURCE}) has already ended (${message.slice('Transaction is already '.length)}): write inside db.transaction().execute()'s callback, before it returns`,
          )
        throw error
      })
    const threadId = Number(rows[0]?.id)
    const core = (pool as unknown as { pool?: CorePool }).pool
    const raw = core?._allConnections?.toArray().find((connection) => connection.threadId === threadId)
    if (raw === undefined)
      throw new ValidationError(
        ADAPTER,
        `tx (${SOURCE}) runs on connection ${threadId}, which is not one of the store's pool: ` +
          "build Kysely's MysqlDialect on the store's mysql2 pool, new MysqlDialect({ pool: pool.pool }), so txbox can write on the transaction's connection",
      )
    // Kysely does not say whether its transaction is still open: the server is asked.
    return { connection: raw.promise(), open: false }
  })
}
