import type { TransactionDriver } from './transaction-driver.js'

/** Rolls back; answers the error when the connection's state is now unknown. */
const rollbackQuietly = async <Tx>(driver: TransactionDriver<Tx>, tx: Tx): Promise<Error | undefined> => {
  try {
    await driver.rollback(tx)
    return undefined
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error))
  }
}

/**
 * `fn` in one transaction of `driver`, committed (or rolled back with `rollback`) before this
 * returns; when `fn` or the final COMMIT/ROLLBACK throws, rolled back and that error rethrown.
 * Released exactly once, as broken when a rollback failed. No ambient transaction and no
 * retry: for an adapter's own short transactions (migrations, conformance fixtures), where
 * `store.transaction` (AmbientTransactions) would make the writes of concurrent calls join.
 */
export const runOnDriver = async <Tx, T>(
  driver: TransactionDriver<Tx>,
  fn: (tx: Tx) => Promise<T>,
  options: { readonly rollback?: boolean | undefined } = {},
): Promise<T> => {
  const tx = await driver.begin()
  let broken: Error | undefined
  try {
    let result: T
    try {
      result = await fn(tx)
    } catch (error) {
      broken = await rollbackQuietly(driver, tx)
      throw error
    }
    try {
      if (options.rollback) await driver.rollback(tx)
      else await driver.commit(tx)
    } catch (error) {
      broken = await rollbackQuietly(driver, tx)
      throw error
    }
    return result
  } finally {
    await driver.release(tx, broken)
  }
}
