import { type Capabilities, defineCapabilities, type TxboxStore } from '@txbox/core'
import type { ClientSession } from 'mongodb'
import { MAX_EVENT_BYTES } from './collections.js'
import { MongoContext, type ServerRuntime } from './context.js'
import { MongoInboxRepository } from './mongodb-inbox-repository.js'
import type { MongoStoreOptions } from './mongodb-options.js'
import { MongoOutboxRepository } from './mongodb-outbox-repository.js'

/**
 * What the MongoDB adapter promises on a replica set or sharded cluster. On a standalone
 * mongod or FerretDB v1 there are no transactions: {@link MongoStore.detectCapabilities}
 * then reports `transactions: 'none'`.
 */
export const mongodbCapabilities = defineCapabilities({
  transactions: 'native',
  claim: 'conditional-update',
  maxEventBytes: MAX_EVENT_BYTES,
})

/** The capabilities of the server behind `runtime`. */
export const runtimeCapabilities = (runtime: ServerRuntime): Capabilities =>
  runtime.transactions
    ? mongodbCapabilities
    : defineCapabilities({
        transactions: 'none',
        claim: 'conditional-update',
        maxEventBytes: MAX_EVENT_BYTES,
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
  readonly capabilities: Capabilities
  /** Probes the server once (hello + buildInfo) and returns what this deployment supports. */
  detectCapabilities(): Promise<Capabilities>
  /** The server's name and version, e.g. `MongoDB 7.0.14 (replica set rs0)`. */
  serverVersion(): Promise<string>
}

/** Creates the outbox and inbox on `db`, sharing one clock, prefix and server probe. */
export const createMongoStore = (options: MongoStoreOptions): MongoStore => {
  const context = new MongoContext(options)
  const detectCapabilities = async (): Promise<Capabilities> => runtimeCapabilities(await context.runtime())
  return {
    outbox: new MongoOutboxRepository(options, context),
    inbox: new MongoInboxRepository(options, context),
    migrate: () => context.migrate(),
    get capabilities() {
      return context.detected ? runtimeCapabilities(context.detected) : mongodbCapabilities
    },
    detectCapabilities,
    serverVersion: async () => (await context.runtime()).serverVersion,
  }
}
