import type { Capabilities } from './capabilities.js'
import type { InboxRepository } from './inbox.js'
import type { OutboxRepository } from './outbox.js'
import type { TransactionFunction, TransactionOptions } from './transactions/transaction-function.js'
import type { TransactionalStore } from './transactions/transactional-store.js'

/** A store's transaction handle, or `unknown` for a store typed without one (`Tx` = `never`). */
type AnyHandle<Tx> = [Tx] extends [never] ? unknown : Tx

/** What every `create<Db>Store` factory returns. */
export interface TxboxStore<Tx = never> {
  readonly outbox: OutboxRepository<Tx>
  readonly inbox: InboxRepository<Tx>
  /** Creates or upgrades the schema. Idempotent; safe to run from two processes at once. */
  migrate(): Promise<void>
  /**
   * What the store promises, frozen. `maxEventBytes` is always set: the limit this store
   * enforces at enqueue (its `maxEventBytes` option, default 1 MiB), which a relay can rely
   * on as the largest event it will ever claim.
   */
  readonly capabilities: Capabilities & { readonly maxEventBytes: number }
  /**
   * Runs a function in a native transaction the store opens and ends itself; the writes
   * inside it join that transaction without `{ tx }` (see {@link TransactionalStore}).
   * Present on the stores that have transactions. On a `TxboxStore` whose `Tx` is left out
   * (`never`), `fn` takes an `unknown` handle, so every concrete store (`MemoryStore`,
   * `PostgresStore`) is still a `TxboxStore`.
   */
  transaction?<T>(fn: TransactionFunction<AnyHandle<Tx>, T>, options?: TransactionOptions): Promise<T>
}
