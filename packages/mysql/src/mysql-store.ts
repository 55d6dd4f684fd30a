import {
  AmbientTransactions,
  DEFAULT_MAX_EVENT_BYTES,
  defineCapabilities,
  systemClock,
  type TransactionalStore,
  type TxboxStore,
  Validator,
} from '@txbox/core'
import type { PoolConnection } from 'mysql2/promise'
import { ADAPTER, classifyMySqlError } from './errors.js'
import { migrateMySql } from './migrate.js'
import { MySqlInboxRepository } from './mysql-inbox-repository.js'
import { DEFAULT_TABLE_PREFIX, type MySqlStoreOptions } from './mysql-options.js'
import { MySqlOutboxRepository } from './mysql-outbox-repository.js'
import type { MySqlTransaction } from './query-handle.js'
import { MySqlTransactionDriver } from './transaction-driver.js'

/** What the MySQL / MariaDB store can promise (with the default `maxEventBytes`; see `store.capabilities`). */
export const mySqlCapabilities = defineCapabilities({
  transactions: 'native',
  claim: 'skip-locked',
  maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
  orderingKeys: true,
})

/**
 * The store `createMySqlStore` returns. `{ tx }` is a mysql2 connection inside a transaction
 * or an integration's handle (`MySqlTransaction`); `store.transaction(fn)` runs `fn` on a
 * pooled `PoolConnection` inside BEGIN, and the writes inside it join without `{ tx }`.
 */
export interface MySqlStore extends TxboxStore<MySqlTransaction> {
  /** See `TransactionalStore.transaction`: `fn` gets the connection, to run its own statements on. */
  readonly transaction: TransactionalStore<PoolConnection>['transaction']
  readonly outbox: MySqlOutboxRepository
  readonly inbox: MySqlInboxRepository
  /** The validated table prefix. */
  readonly tablePrefix: string
  /**
   * The largest event (payload + headers + id + subject, UTF-8 bytes) this server takes in
   * one statement: `max_allowed_packet` less 16 KiB. Bigger events raise
   * `PayloadTooLargeError` before any write, as do events over `capabilities.maxEventBytes`.
   */
  serverMaxEventBytes(): Promise<number>
}

/** Creates the outbox and inbox on one mysql2/promise pool, sharing a table prefix and a clock. */
export const createMySqlStore = (options: MySqlStoreOptions): MySqlStore => {
  const validate = new Validator(ADAPTER)
  const tablePrefix = validate.identifier(options.tablePrefix ?? DEFAULT_TABLE_PREFIX, 'tablePrefix')
  // One per store: the outbox and the inbox join the same store.transaction.
  const ambient = new AmbientTransactions<PoolConnection>({
    adapter: ADAPTER,
    driver: new MySqlTransactionDriver(options.pool),
    classify: classifyMySqlError,
  })
  const outbox = new MySqlOutboxRepository({ ...options, tablePrefix }, ambient)
  const inbox = new MySqlInboxRepository({ ...options, tablePrefix }, ambient)
  validate.identifier(`${tablePrefix}schema_version`, 'schema version table name')
  const clock = options.clock ?? systemClock
  return {
    outbox,
    inbox,
    tablePrefix,
    migrate: async () => {
      await migrateMySql(options.pool, tablePrefix, clock)
      // A maxEventBytes the server could never honour fails at start, not at the first event.
      if (options.maxEventBytes !== undefined) await outbox.checkMaxEventBytes()
    },
    transaction: (fn, transactionOptions) => ambient.run(fn, transactionOptions),
    serverMaxEventBytes: () => outbox.serverMaxEventBytes(),
    capabilities: defineCapabilities({ ...mySqlCapabilities, maxEventBytes: outbox.maxEventBytes }),
  }
}
