/**
 * What an adapter supplies to {@link AmbientTransactions}: how to open, end and give back one
 * native transaction. Errors it throws are classified by the store's `classify` and surface
 * as a `StorageError` (`transaction.begin`, `transaction.commit`, `transaction.rollback`,
 * `transaction.release`).
 */
export interface TransactionDriver<Tx> {
  /**
   * True when each `begin` answers a new handle that only this transaction ever uses (a
   * collector, a MULTI, a memory transaction), so the handle itself says which store opened
   * it and whether its transaction ended. The repositories then refuse, before any write, a
   * `{ tx }` of another store's `store.transaction` and one whose transaction has ended: a
   * write queued into it would be committed by another store, or by no one. Never set it for
   * a pooled connection, which the caller may take from the pool and use again.
   */
  readonly singleUse?: boolean | undefined
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
