/**
 * What an adapter supplies to {@link AmbientTransactions}: how to open, end and give back one
 * native transaction. Errors it throws are classified by the store's `classify` and surface
 * as a `StorageError` (`transaction.begin`, `transaction.commit`, `transaction.rollback`,
 * `transaction.release`).
 */
export interface TransactionDriver<Tx> {
  /** Takes a connection (or creates a collector / MULTI) and starts the transaction. */
  begin(): Promise<Tx>
  commit(tx: Tx): Promise<void>
  /**
   * Ends the transaction without its writes. Also called after a failed `commit` (SQLite, for
   * one, keeps the transaction open when COMMIT fails), so rolling back a transaction the
   * database already ended must succeed as a no-op.
   */
  rollback(tx: Tx): Promise<void>
  /**
   * Always called once after commit or rollback; `broken` when the connection's state is
   * unknown (the rollback failed): destroy it rather than return it to a pool.
   */
  release(tx: Tx, broken: Error | undefined): Promise<void> | void
}
