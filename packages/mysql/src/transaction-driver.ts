import type { TransactionDriver } from '@txbox/core'
import { runOnDriver } from '@txbox/core'
import type { Connection, Pool, PoolConnection } from 'mysql2/promise'

/**
 * The connections inside a transaction this adapter began itself (`store.transaction`, its
 * own short transactions), by their mysql2 core connection: a handle known to be open, so
 * its writes skip the server round trip that checks a caller's handle.
 */
const begunHere = new WeakSet<object>()

/**
 * The mysql2 core connection under a promise wrapper: one per physical connection, however
 * many wrappers (`.promise()`) an ORM made of it. The typings only declare it on PoolConnection.
 */
export const coreConnection = (connection: Connection): object =>
  (connection as unknown as { connection: object }).connection

/** True while `connection` is inside a transaction this adapter began and has not ended. */
export const begunByTxbox = (connection: Connection): boolean => begunHere.has(coreConnection(connection))

/**
 * How the adapter opens, ends and gives back one native transaction on a connection of the
 * pool: `store.transaction` (through core's `AmbientTransactions`) and the adapter's own short
 * transactions (claim, inbox claim) both run on it. A connection whose ROLLBACK failed is
 * destroyed, never returned to the pool: its session state is unknown.
 */
export class MySqlTransactionDriver implements TransactionDriver<PoolConnection> {
  readonly #pool: Pool
  /** Set before BEGIN (e.g. READ COMMITTED); undefined keeps the server's level. */
  readonly #isolation: string | undefined

  constructor(pool: Pool, isolation?: 'READ COMMITTED') {
    this.#pool = pool
    this.#isolation = isolation
  }

  async begin(): Promise<PoolConnection> {
    const connection = await this.#pool.getConnection()
    try {
      // A pending SET TRANSACTION applies to the next transaction only, so it never leaks
      // into the user's next one: the BEGIN below consumes it.
      if (this.#isolation !== undefined)
        await connection.query(`SET TRANSACTION ISOLATION LEVEL ${this.#isolation}`)
      await connection.beginTransaction()
    } catch (error) {
      connection.destroy()
      throw error
    }
    begunHere.add(connection.connection)
    return connection
  }

  async commit(connection: PoolConnection): Promise<void> {
    await connection.commit()
  }

  async rollback(connection: PoolConnection): Promise<void> {
    await connection.rollback()
  }

  release(connection: PoolConnection, broken: Error | undefined): void {
    begunHere.delete(connection.connection)
    if (broken === undefined) connection.release()
    else connection.destroy()
  }

  /**
   * `run` inside one transaction, committed before this returns (rolled back instead with
   * `rollback`); on a throw rolled back and `run`'s error rethrown. For the adapter's own short
   * transactions and the conformance target's (no ambient, no retry: the caller retries).
   */
  async run<T>(
    run: (connection: PoolConnection) => Promise<T>,
    options: { readonly rollback?: boolean | undefined } = {},
  ): Promise<T> {
    return runOnDriver(this, run, options)
  }
}
