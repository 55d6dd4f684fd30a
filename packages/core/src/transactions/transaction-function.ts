/** Options of `store.transaction`. */
export interface TransactionOptions {
  /**
   * Run the whole function again this many times when it fails with a StorageError (or a
   * driver error the store classifies) whose `reason` is 'conflict' (serialization failure,
   * deadlock). Default 0. A nested call joins the outer one and may not set it.
   */
  readonly retries?: number | undefined
}

/** What `fn` learns about its run: 1 on the first run, 2 on the first retry, ... */
export interface TransactionAttempt {
  readonly attempt: number
}

/** The caller's work inside one transaction: `tx` is the store's open native transaction. */
export type TransactionFunction<Tx, T> = (tx: Tx, attempt: TransactionAttempt) => Promise<T>
