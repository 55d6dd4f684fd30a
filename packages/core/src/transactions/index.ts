export { AmbientTransactions, type AmbientTransactionsSettings } from './ambient-transactions.js'
export type { TransactionDriver } from './transaction-driver.js'
export type { TransactionAttempt, TransactionFunction, TransactionOptions } from './transaction-function.js'
export type { TransactionalStore } from './transactional-store.js'
