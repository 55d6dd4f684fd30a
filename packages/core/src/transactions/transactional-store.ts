import type { TransactionFunction, TransactionOptions } from './transaction-function.js'

/** Implemented by every store that has transactions (`TxboxStore.transaction`). */
export interface TransactionalStore<Tx> {
  /**
   * Runs `fn(tx)` in a native transaction on a connection the store takes: commits when `fn`
   * resolves, rolls back and rethrows when it throws, always gives the connection back.
   * Inside `fn`, `outbox.findOrCreate`, `findOrCreateMany` and `inbox.markAsProcessed` join
   * the transaction without `{ tx }`; an explicit `{ tx }` still wins. A nested call joins
   * the outer transaction. With `retries`, a failure classified `conflict` runs `fn` again.
   */
  transaction<T>(fn: TransactionFunction<Tx, T>, options?: TransactionOptions): Promise<T>
}
