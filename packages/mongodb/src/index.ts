export { connectMongoDb, type MongoDbConnection, type MongoDbConnectOptions } from './connect.js'
export { classifyMongoDbError } from './errors.js'
export { migrationScripts, SCHEMA_VERSION } from './migrate.js'
export { MongoDbInboxRepository } from './mongodb-inbox-repository.js'
export {
  DEFAULT_COLLECTION_PREFIX,
  type MongoDbStoreOptions,
  type WriteGuard,
} from './mongodb-options.js'
export { MongoDbOutboxRepository } from './mongodb-outbox-repository.js'
export {
  createMongoDbStore,
  type MongoDbCapabilities,
  type MongoDbStore,
  mongoDbCapabilities,
} from './mongodb-store.js'
export { MAX_EVENT_BYTES } from './rows.js'

import { MongoDbInboxRepository } from './mongodb-inbox-repository.js'
import type { MongoDbStoreOptions } from './mongodb-options.js'
import { MongoDbOutboxRepository } from './mongodb-outbox-repository.js'
import {
  createMongoDbStore,
  type MongoDbCapabilities,
  type MongoDbStore,
  mongoDbCapabilities,
} from './mongodb-store.js'

/** @deprecated use {@link createMongoDbStore} */
export const createMongoStore = createMongoDbStore
/** @deprecated use {@link mongoDbCapabilities} */
export const mongodbCapabilities = mongoDbCapabilities
/** @deprecated use {@link MongoDbOutboxRepository} */
export const MongoOutboxRepository = MongoDbOutboxRepository
/** @deprecated use {@link MongoDbOutboxRepository} */
export type MongoOutboxRepository = MongoDbOutboxRepository
/** @deprecated use {@link MongoDbInboxRepository} */
export const MongoInboxRepository = MongoDbInboxRepository
/** @deprecated use {@link MongoDbInboxRepository} */
export type MongoInboxRepository = MongoDbInboxRepository
/** @deprecated use {@link MongoDbCapabilities} */
export type MongoCapabilities = MongoDbCapabilities
/** @deprecated use {@link MongoDbStore} */
export type MongoStore = MongoDbStore
/** @deprecated use {@link MongoDbStoreOptions} */
export type MongoStoreOptions = MongoDbStoreOptions
