/**
 * The stores txbox ships, in one list: the relay's `--store`, the conformance CLI's
 * built-in targets, the vitest projects and the bench all derive theirs from it. `schemes`
 * are the URL schemes the store's driver takes (SQLite takes a file path, not a URL).
 */
export const STORE_REGISTRY = Object.freeze([
  {
    kind: 'sqlite',
    adapter: '@txbox/sqlite',
    driver: 'better-sqlite3',
    connect: 'connectSqlite',
    schemes: [],
    example: './outbox.db',
  },
  {
    kind: 'postgres',
    adapter: '@txbox/postgres',
    driver: 'pg',
    connect: 'connectPostgres',
    schemes: ['postgres:', 'postgresql:'],
    example: 'postgres://user:password@127.0.0.1:5432/app',
  },
  {
    kind: 'mysql',
    adapter: '@txbox/mysql',
    driver: 'mysql2',
    connect: 'connectMySql',
    schemes: ['mysql:', 'mariadb:'],
    example: 'mysql://user:password@127.0.0.1:3306/app',
  },
  {
    kind: 'mongodb',
    adapter: '@txbox/mongodb',
    driver: 'mongodb',
    connect: 'connectMongoDb',
    schemes: ['mongodb:', 'mongodb+srv:'],
    example: 'mongodb://127.0.0.1:27017/app',
  },
  {
    kind: 'redis',
    adapter: '@txbox/redis',
    driver: 'ioredis',
    connect: 'connectRedis',
    schemes: ['redis:', 'rediss:'],
    example: 'redis://127.0.0.1:6379',
  },
  {
    kind: 'dynamodb',
    adapter: '@txbox/dynamodb',
    driver: '@aws-sdk/client-dynamodb',
    connect: 'connectDynamoDb',
    schemes: ['http:', 'https:'],
    example: 'http://127.0.0.1:8000',
  },
] as const)

/** One shipped store. */
export type StoreRegistration = (typeof STORE_REGISTRY)[number]
/** The name of a shipped store (`--store`, the conformance target, the vitest project). */
export type StoreKind = StoreRegistration['kind']
/** Every {@link StoreKind}, in registry order. */
export const STORE_KINDS: readonly StoreKind[] = Object.freeze(STORE_REGISTRY.map((store) => store.kind))

/** The registration of a shipped store. */
export const storeRegistration = (kind: StoreKind): StoreRegistration =>
  STORE_REGISTRY.find((store) => store.kind === kind) as StoreRegistration
