import {
  AmbientTransactions,
  DEFAULT_MAX_EVENT_BYTES,
  defineCapabilities,
  type TransactionalStore,
  type TxboxStore,
} from '@txbox/core'
import type { ClientBase, PoolClient } from 'pg'
import type { PostgresTransaction } from './client.js'
import { ADAPTER, classifyPostgresError } from './errors.js'
import { migratePostgres } from './migrate.js'
import { PostgresInboxRepository } from './postgres-inbox-repository.js'
import { type PostgresStoreOptions, resolveOptions } from './postgres-options.js'
import { PostgresOutboxRepository } from './postgres-outbox-repository.js'
import { createPostgresWakeup, type PostgresWakeup } from './postgres-wakeup.js'
import { PostgresTransactionDriver } from './transaction-driver.js'

/**
 * What the PostgreSQL store promises: the caller's own transaction, SKIP LOCKED claims, and
 * ordering keys (with the default `maxEventBytes`; a store's own `capabilities` carry its configured limit).
 */
export const postgresCapabilities = defineCapabilities({
  transactions: 'native',
  claim: 'skip-locked',
  maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
  orderingKeys: true,
})

/** The store returned by {@link createPostgresStore}. */
export interface PostgresStore extends TxboxStore<PostgresTransaction> {
  readonly outbox: PostgresOutboxRepository
  readonly inbox: PostgresInboxRepository
  /** Frozen; `maxEventBytes` is this store's configured limit. */
  readonly capabilities: typeof postgresCapabilities
  /** The schema holding the tables. */
  readonly schema: string
  /** The table prefix. */
  readonly tablePrefix: string
  /** The `LISTEN/NOTIFY` channel enqueues notify on. */
  readonly channel: string
  /**
   * Runs `fn(client)` inside BEGIN on a client of the pool: COMMIT when it resolves, ROLLBACK
   * and rethrow when it throws, the client always released (destroyed when COMMIT or ROLLBACK
   * failed). Inside, `findOrCreate`, `findOrCreateMany` and `markAsProcessed` join it without
   * `{ tx }`; run your own statements on `client`. `{ retries: n }` runs `fn` again on a
   * serialization failure or deadlock (SQLSTATE 40001, 40P01), `attempt` counting from 1.
   */
  readonly transaction: TransactionalStore<PoolClient>['transaction']
  /**
   * A wake-up hint on this store's channel, tables and clock (see `PostgresWakeup`). Uses one
   * connection of the store's pool while listening, or `client` when given.
   */
  createWakeup(options?: { client?: ClientBase | undefined }): PostgresWakeup
  /**
   * On time-partitioned tables (the `partitioning` option), creates the partitions of now
   * and the `ahead` ones after it that are missing, for the outbox and the inbox; answers
   * how many. `migrate()` and every `cleanup` do it too; call it from a scheduler when
   * neither runs once per period (the default partition takes the rows meanwhile).
   */
  maintainPartitions(): Promise<number>
}

/**
 * Creates the outbox and inbox on a pg Pool. Call `migrate()` once at startup (or apply
 * migrations/*.sql with your own tool).
 */
export const createPostgresStore = (options: PostgresStoreOptions): PostgresStore => {
  const resolved = resolveOptions(options)
  const { pool, schema, tablePrefix, channel } = resolved
  // One per store: the outbox and the inbox join the same store.transaction.
  const ambient = new AmbientTransactions<PoolClient>({
    adapter: ADAPTER,
    driver: new PostgresTransactionDriver(pool),
    classify: classifyPostgresError,
  })
  const outbox = new PostgresOutboxRepository(resolved, ambient)
  const inbox = new PostgresInboxRepository(resolved, ambient)
  return {
    outbox,
    inbox,
    transaction: (fn, transactionOptions) => ambient.run(fn, transactionOptions),
    capabilities: defineCapabilities({ ...postgresCapabilities, maxEventBytes: resolved.maxEventBytes }),
    schema,
    tablePrefix,
    channel,
    migrate: () => migratePostgres(resolved),
    maintainPartitions: async () => (await outbox.maintainPartitions()) + (await inbox.maintainPartitions()),
    createWakeup: (wakeupOptions = {}) => {
      const namespace = { schema, tablePrefix, channel, clock: resolved.clock }
      return createPostgresWakeup(
        wakeupOptions.client === undefined
          ? { pool, ...namespace }
          : { client: wakeupOptions.client, ...namespace },
      )
    },
  }
}
