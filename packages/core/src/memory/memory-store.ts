import { defineCapabilities } from '../capabilities.js'
import type { Clock } from '../clock.js'
import { ValidationError } from '../errors.js'
import { DEFAULT_MAX_EVENT_BYTES } from '../nats-message.js'
import type { TxboxStore } from '../store.js'
import { AmbientTransactions } from '../transactions/ambient-transactions.js'
import type { TransactionDriver } from '../transactions/transaction-driver.js'
import type { TransactionalStore } from '../transactions/transactional-store.js'
import { MemoryInboxRepository } from './memory-inbox-repository.js'
import { MemoryOutboxRepository } from './memory-outbox-repository.js'
import { MemoryTransaction } from './memory-transaction.js'
import { memoryTransactionDriver } from './memory-transaction-driver.js'

/** What the memory store can promise (with the default `maxEventBytes`; see `store.capabilities`). */
export const memoryCapabilities = defineCapabilities({
  transactions: 'native',
  claim: 'single-writer',
  maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
  orderingKeys: true,
  keyRuns: true,
})

/** Options of {@link createMemoryStore}. */
export interface MemoryStoreOptions {
  clock?: Clock
  /** The largest event, as NATS message bytes (payload + headers). Default 1,048,576. */
  maxEventBytes?: number | undefined
  /**
   * How `store.transaction` begins, commits, rolls back and releases (default
   * {@link memoryTransactionDriver}). For tests of code that must survive a failing commit:
   * wrap the default and throw, e.g. a `StorageError` with reason `conflict` to exercise `retries`.
   */
  transactionDriver?: TransactionDriver<MemoryTransaction> | undefined
}

const DRIVER_METHODS = ['begin', 'commit', 'rollback', 'release'] as const

/** The in-memory store: the reference implementation, for tests and examples. */
export interface MemoryStore extends TxboxStore<MemoryTransaction> {
  readonly outbox: MemoryOutboxRepository
  readonly inbox: MemoryInboxRepository
  readonly transaction: TransactionalStore<MemoryTransaction>['transaction']
  /** Opens a transaction to pass as `{ tx }`; commit or roll it back yourself. */
  begin(): MemoryTransaction
}

/** Creates an in-memory outbox and inbox sharing one clock and one `store.transaction`. */
export const createMemoryStore = (options: MemoryStoreOptions = {}): MemoryStore => {
  const driver = options.transactionDriver === undefined ? memoryTransactionDriver : options.transactionDriver
  const missing = DRIVER_METHODS.filter((method) => typeof driver?.[method] !== 'function')
  if (missing.length > 0)
    throw new ValidationError(
      'memory',
      `transactionDriver must have the functions begin, commit, rollback and release (missing: ${missing.join(', ')}); wrap memoryTransactionDriver, or leave the option out`,
    )
  // The identity of this store's transactions: its repositories refuse another store's.
  const identity = {}
  const ambient = new AmbientTransactions({
    adapter: 'memory',
    driver: {
      begin: async () => (await driver.begin()).openedBy(identity),
      commit: (tx) => driver.commit(tx),
      rollback: (tx) => driver.rollback(tx),
      release: (tx, broken) => driver.release(tx, broken),
    },
  })
  const outbox = new MemoryOutboxRepository({ ...options, ambient, identity })
  return {
    outbox,
    inbox: new MemoryInboxRepository({ ...options, ambient, identity }),
    migrate: async () => {},
    capabilities: defineCapabilities({ ...memoryCapabilities, maxEventBytes: outbox.maxEventBytes }),
    begin: () => new MemoryTransaction(identity),
    transaction: (fn, transactionOptions) => ambient.run(fn, transactionOptions),
  }
}
