import type { TransactionDriver } from '@txbox/core'
import { runOnDriver } from '@txbox/core'
import type { Pool, PoolClient } from 'pg'
import { trustSession } from './transaction-check.js'

const asError = (error: unknown): Error => (error instanceof Error ? error : new Error(String(error)))

/**
 * Clients whose COMMIT failed: whatever the ROLLBACK after it says, one that failed to end its
 * transaction is not trusted with the next one.
 */
const failedCommits = new WeakMap<PoolClient, Error>()

/**
 * How the adapter opens, ends and gives back one native transaction on a client of the pool:
 * `store.transaction` (through core's `AmbientTransactions`) and the adapter's own
 * transactions (`migrate()`, the conformance target) both run on it. A client whose BEGIN,
 * COMMIT or ROLLBACK failed is destroyed instead of going back to the pool: its session state
 * is unknown.
 */
export class PostgresTransactionDriver implements TransactionDriver<PoolClient> {
  readonly #pool: Pool

  constructor(pool: Pool) {
    this.#pool = pool
  }

  async begin(): Promise<PoolClient> {
    const client = await this.#pool.connect()
    try {
      await client.query('BEGIN')
    } catch (error) {
      client.release(asError(error))
      throw error
    }
    // A client of the store's own pool is on the store's database: no probe before its writes.
    trustSession(this.#pool, client)
    return client
  }

  async commit(client: PoolClient): Promise<void> {
    try {
      await client.query('COMMIT')
    } catch (error) {
      failedCommits.set(client, asError(error))
      throw error
    }
  }

  /** After a failed COMMIT the server has already ended the transaction: ROLLBACK is then a no-op (a warning). */
  async rollback(client: PoolClient): Promise<void> {
    await client.query('ROLLBACK')
  }

  release(client: PoolClient, broken: Error | undefined): void {
    const failedCommit = failedCommits.get(client)
    failedCommits.delete(client)
    client.release(broken ?? failedCommit)
  }

  /**
   * `fn` inside one transaction, then COMMIT (or ROLLBACK when `rollback`, or when `fn` throws:
   * its error is the one thrown). No ambient transaction and no retry: for the adapter's own
   * transactions. A failed COMMIT is followed by a ROLLBACK; a failed ROLLBACK destroys the client.
   */
  async run<T>(
    fn: (client: PoolClient) => Promise<T>,
    options: { readonly rollback?: boolean | undefined } = {},
  ): Promise<T> {
    return runOnDriver(this, fn, options)
  }
}
