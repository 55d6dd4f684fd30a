import {
  AmbientTransactions,
  type Capabilities,
  DEFAULT_MAX_EVENT_BYTES,
  defineCapabilities,
  type TransactionalStore,
  type TxboxStore,
} from '@txbox/core'
import type { ClientSession } from 'mongodb'
import { MongoDbClient } from './client.js'
import { ADAPTER, classifyMongoDbError } from './errors.js'
import { migrateMongoDb } from './migrate.js'
import { MongoDbInboxRepository } from './mongodb-inbox-repository.js'
import { type MongoDbStoreOptions, resolveMongoDbOptions } from './mongodb-options.js'
import { MongoDbOutboxRepository } from './mongodb-outbox-repository.js'
import type { ServerRuntime } from './server.js'
import { mongoDbTransactionDriver } from './transaction-driver.js'

/** Capabilities with the store's effective `maxEventBytes`, as every txbox store reports them. */
export type MongoDbCapabilities = Capabilities & { readonly maxEventBytes: number }

/**
 * What the MongoDB adapter promises on a replica set or sharded cluster (with the default
 * `maxEventBytes`). On a standalone mongod or FerretDB v1 there are no transactions:
 * {@link MongoDbStore.detectCapabilities} then reports `transactions: 'none'`.
 */
export const mongoDbCapabilities = defineCapabilities({
  transactions: 'native',
  claim: 'conditional-update',
  maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
  orderingKeys: true,
})

/** The capabilities of the server behind `runtime`, for a store whose limit is `maxEventBytes`. */
const runtimeCapabilities = (
  runtime: ServerRuntime | undefined,
  maxEventBytes: number,
): MongoDbCapabilities =>
  runtime === undefined || runtime.transactions
    ? defineCapabilities({ ...mongoDbCapabilities, maxEventBytes })
    : defineCapabilities({
        transactions: 'none',
        claim: 'conditional-update',
        maxEventBytes,
        orderingKeys: true,
        transactionsNote: runtime.transactionsNote ?? 'the server has no transactions',
      })

/** The MongoDB store: `{ tx }` is a `ClientSession` with an active transaction. */
export interface MongoDbStore extends TxboxStore<ClientSession> {
  readonly outbox: MongoDbOutboxRepository
  readonly inbox: MongoDbInboxRepository
  /**
   * Runs `fn(session)` in a transaction on a session of the store's MongoClient: committed
   * when `fn` resolves, aborted when it throws, the session always ended. Needs a replica set
   * or sharded cluster: on a server without transactions (standalone, FerretDB v1) it throws
   * a ValidationError before `fn` runs. Pass the session to your own writes (`{ session }`).
   */
  readonly transaction: TransactionalStore<ClientSession>['transaction']
  /**
   * The static {@link mongoDbCapabilities} until the server was probed (by `migrate()`,
   * `detectCapabilities()` or the first write), then what this deployment supports.
   */
  readonly capabilities: MongoDbCapabilities
  /** Probes the server once (hello + buildInfo) and returns what this deployment supports. */
  detectCapabilities(): Promise<MongoDbCapabilities>
  /** The server's name and version, e.g. `MongoDB 7.0.14 (replica set rs0)`. */
  serverVersion(): Promise<string>
}

/** Creates the outbox and inbox on `db`, sharing one clock, prefix and server probe. */
export const createMongoDbStore = (options: MongoDbStoreOptions): MongoDbStore => {
  const client = new MongoDbClient(resolveMongoDbOptions(options))
  const ambient = new AmbientTransactions({
    adapter: ADAPTER,
    driver: mongoDbTransactionDriver(client),
    classify: classifyMongoDbError,
  })
  client.ambient = ambient
  return {
    outbox: new MongoDbOutboxRepository(options, client),
    inbox: new MongoDbInboxRepository(options, client),
    transaction: (fn, transactionOptions) => ambient.run(fn, transactionOptions),
    migrate: async () => {
      await migrateMongoDb(client)
    },
    get capabilities() {
      return runtimeCapabilities(client.detected, client.maxEventBytes)
    },
    detectCapabilities: async () => runtimeCapabilities(await client.runtime(), client.maxEventBytes),
    serverVersion: async () => (await client.runtime()).serverVersion,
  }
}
