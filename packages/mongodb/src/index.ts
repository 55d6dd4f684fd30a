export { DEFAULT_COLLECTION_PREFIX, MAX_EVENT_BYTES, SCHEMA_VERSION } from './collections.js'
export { MongoInboxRepository } from './mongodb-inbox-repository.js'
export type { MongoStoreOptions, WriteGuard } from './mongodb-options.js'
export { MongoOutboxRepository } from './mongodb-outbox-repository.js'
export {
  createMongoStore,
  type MongoCapabilities,
  type MongoStore,
  mongodbCapabilities,
} from './mongodb-store.js'
