import type { TransactionDriver } from '../transactions/transaction-driver.js'
import { MemoryTransaction } from './memory-transaction.js'

/**
 * How the memory store runs `store.transaction`: a fresh {@link MemoryTransaction}, applied at
 * commit. There is no connection, so release has nothing to give back. A rollback after a
 * failed commit finds the transaction already ended and does nothing, as a database would.
 * Not `singleUse`: an ended MemoryTransaction refuses writes itself, and the store refuses
 * another store's by its identity, so the reference store needs no help from core for either.
 */
export const memoryTransactionDriver: TransactionDriver<MemoryTransaction> = {
  begin: async () => new MemoryTransaction(),
  commit: async (tx) => tx.commit(),
  rollback: async (tx) => {
    if (tx.state === 'open') tx.rollback()
  },
  release: () => {},
}
