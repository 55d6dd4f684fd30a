import { DynamoDbInboxRepository } from './dynamodb-inbox-repository.js'
import type { DynamoDbStoreOptions } from './dynamodb-options.js'
import { DynamoDbOutboxRepository } from './dynamodb-outbox-repository.js'
import { createDynamoDbStore, type DynamoDbStore, dynamoDbCapabilities } from './dynamodb-store.js'

export { MAX_TRANSACTION_ACTIONS } from './client.js'
export {
  connectDynamoDb,
  type DynamoDbConnection,
  type DynamoDbConnectOptions,
} from './connect.js'
export { DynamoDbInboxRepository } from './dynamodb-inbox-repository.js'
export {
  type BatchEnqueue,
  DEFAULT_SHARDS,
  type DynamoDbStoreOptions,
  MAX_SHARDS,
} from './dynamodb-options.js'
export { DynamoDbOutboxRepository } from './dynamodb-outbox-repository.js'
export { createDynamoDbStore, type DynamoDbStore, dynamoDbCapabilities } from './dynamodb-store.js'
export { classifyDynamoDbError } from './errors.js'
export {
  DynamoDbMigrationHistory,
  dynamoDbMigrations,
  migrateDynamoDb,
  migrationScripts,
  SCHEMA_VERSION,
  TTL_ATTRIBUTE,
  tableDefinition,
} from './migrate.js'
export { MAX_ITEM_BYTES, toInboxEvent, toOutboxEvent } from './rows.js'

/** @deprecated use {@link createDynamoDbStore} */
export const createDynamoStore = createDynamoDbStore
/** @deprecated use {@link DynamoDbStore} */
export type DynamoStore = DynamoDbStore
/** @deprecated use {@link DynamoDbStoreOptions} */
export type DynamoStoreOptions = DynamoDbStoreOptions
/** @deprecated use {@link dynamoDbCapabilities} */
export const dynamodbCapabilities = dynamoDbCapabilities
/** @deprecated use {@link DynamoDbOutboxRepository} */
export const DynamoOutboxRepository = DynamoDbOutboxRepository
/** @deprecated use {@link DynamoDbOutboxRepository} */
export type DynamoOutboxRepository = DynamoDbOutboxRepository
/** @deprecated use {@link DynamoDbInboxRepository} */
export const DynamoInboxRepository = DynamoDbInboxRepository
/** @deprecated use {@link DynamoDbInboxRepository} */
export type DynamoInboxRepository = DynamoDbInboxRepository
