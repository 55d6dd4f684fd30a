import { type Capabilities, DEFAULT_MAX_EVENT_BYTES, defineCapabilities, type TxboxStore } from '@txbox/core'
import type { ClientSession } from 'mongodb'
import { MongoContext, type ServerRuntime } from './context.js'
import { MongoInboxRepository } from './mongodb-inbox-repository.js'
import type { MongoStoreOptions } from './mongodb-options.js'
import { MongoOutboxRepository } from './mongodb-outbox-repository.js'

/** Capabilities with the store's effective `maxEventBytes`, as every txbox store reports them. */
export type MongoCapabilities = Capabilities & { readonly maxEventBytes: number }

/**
 * What the MongoDB adapter promises on a replica set or sharded cluster (with the default
 * `maxEventBytes`). On a standalone mongod or FerretDB v1 there are no transactions:
 * {@link MongoStore.detectCapabilities} then reports `transactions: 'none'`.
 */
export const mongodbCapabilities = defineCapabilities({
  transactions: 'native',
  claim: 'conditional-update',
  maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
})

/** The capabilities of the server behind `runtime`, for a store whose limit is `maxEventBytes`. */
export const runtimeCapabilities = (
  runtime: ServerRuntime | undefined,
  maxEventBytes: number,
): MongoCapabilities =>
  runtime === undefined || runtime.transactions
    ? defineCapabilities({ ...mongodbCapabilities, maxEventBytes })
    : defineCapabilities({
        transactions: 'none',
        claim: 'conditional-update',
        maxEventBytes,
        transactionsNote: runtime.transactionsNote ?? 'the server has no transactions',
      })

/** The MongoDB store: `{ tx }` is a `ClientSession` with an active transaction. */
export interface MongoStore extends TxboxStore<ClientSession> {
  readonly outbox: MongoOutboxRepository
  readonly inbox: MongoInboxRepository
  /**
   * The static {@link mongodbCapabilities} until the server was probed (by `migrate()`,
   * `detectCapabilities()` or the first write), then what this deployment supports.
   */
  readonly capabilities: MongoCapabilities
  /** Probes the server once (hello + buildInfo) and returns what this deployment supports. */
  detectCapabilities(): Promise<MongoCapabilities>
  /** The server's name and version, e.g. `MongoDB 7.0.14 (replica set rs0)`. */
  serverVersion(): Promise<string>
}

/** Creates the outbox and inbox on `db`, sharing one clock, prefix and server probe. */
export const createMongoStore = (options: MongoStoreOptions): MongoStore => {
  const context = new MongoContext(options)
  const detectCapabilities = async (): Promise<MongoCapabilities> =>
    runtimeCapabilities(await context.runtime(), context.maxEventBytes)
  return {
    outbox: new MongoOutboxRepository(options, context),
    inbox: new MongoInboxRepository(options, context),
    migrate: () => context.migrate(),
    get capabilities() {
      return runtimeCapabilities(context.detected, context.maxEventBytes)
    },
    detectCapabilities,
    serverVersion: async () => (await context.runtime()).serverVersion,
  }
}
