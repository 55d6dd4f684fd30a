/**
 * The stores txbox ships, in one list: the relay's `--store`, the conformance CLI's
 * built-in targets, the vitest projects and the bench all derive theirs from it.
 */
export const STORE_REGISTRY = Object.freeze([
  {
    kind: 'sqlite',
    adapter: '@txbox/sqlite',
    driver: 'better-sqlite3',
    connect: 'connectSqlite',
    /** SQLite takes a file path, not a URL. */
    url: 'path',
  },
  { kind: 'postgres', adapter: '@txbox/postgres', driver: 'pg', connect: 'connectPostgres', url: 'url' },
  { kind: 'mysql', adapter: '@txbox/mysql', driver: 'mysql2', connect: 'connectMySql', url: 'url' },
  { kind: 'mongodb', adapter: '@txbox/mongodb', driver: 'mongodb', connect: 'connectMongoDb', url: 'url' },
  { kind: 'redis', adapter: '@txbox/redis', driver: 'ioredis', connect: 'connectRedis', url: 'url' },
  {
    kind: 'dynamodb',
    adapter: '@txbox/dynamodb',
    driver: '@aws-sdk/client-dynamodb',
    connect: 'connectDynamoDb',
    url: 'url',
  },
] as const)

/** One shipped store. */
export type StoreRegistration = (typeof STORE_REGISTRY)[number]
/** The name of a shipped store (`--store`, the conformance target, the vitest project). */
export type StoreKind = StoreRegistration['kind']
/** Every {@link StoreKind}, in registry order. */
export const STORE_KINDS: readonly StoreKind[] = Object.freeze(STORE_REGISTRY.map((store) => store.kind))
