import { messageOf, type OutboxRepository, type RelayWakeup, TxboxError, type TxboxLogger } from '@txbox/core'
import { ConfigurationError } from './errors.js'
import { redactUrl, urlProblem } from './urls.js'

/** The stores the relay can open. */
export const STORE_KINDS = ['sqlite', 'postgres', 'mysql', 'mongodb', 'redis', 'dynamodb'] as const
export type StoreKind = (typeof STORE_KINDS)[number]

/** What each store needs installed next to `@txbox/relay`: its adapter and its driver. */
export const STORE_PACKAGES: Readonly<Record<StoreKind, readonly string[]>> = {
  sqlite: ['@txbox/sqlite', 'better-sqlite3'],
  postgres: ['@txbox/postgres', 'pg'],
  mysql: ['@txbox/mysql', 'mysql2'],
  mongodb: ['@txbox/mongodb', 'mongodb'],
  redis: ['@txbox/redis', 'ioredis'],
  dynamodb: ['@txbox/dynamodb', '@aws-sdk/client-dynamodb'],
}

/**
 * The URL schemes each store's driver takes. MongoDB is absent: its seed lists
 * (`host1,host2`) are not WHATWG URLs, so its own driver judges the URL (at construction).
 */
const URL_SCHEMES: Readonly<Partial<Record<StoreKind, readonly string[]>>> = {
  postgres: ['postgres:', 'postgresql:'],
  mysql: ['mysql:', 'mariadb:'],
  redis: ['redis:', 'rediss:'],
  dynamodb: ['http:', 'https:'],
}

/** Why `url` can never work for `kind` (checked before anything is loaded), or undefined. */
export const storeUrlProblem = (kind: StoreKind, url: string): string | undefined => {
  if (kind === 'sqlite')
    return /^[a-z][a-z0-9+.-]*:\/\//i.test(url)
      ? 'is a URL, but --store sqlite takes the path of the database file'
      : undefined
  if (kind === 'mongodb')
    return /^mongodb(\+srv)?:\/\//.test(url) ? undefined : 'must start with mongodb:// or mongodb+srv://'
  const schemes = URL_SCHEMES[kind]
  return schemes === undefined ? undefined : urlProblem(url, schemes)
}

/** What the CLI needs to open a store. */
export interface StoreConfig {
  kind: StoreKind
  /** A URL, or for SQLite a file path. */
  url: string
  /** sqlite / postgres / mysql table prefix; mongodb collection prefix; redis key prefix; dynamodb table name. */
  prefix?: string | undefined
  /** PostgreSQL schema. */
  schema?: string | undefined
  /** MongoDB database name (default: the one in the URL). */
  database?: string | undefined
  /** Open the PostgreSQL LISTEN/NOTIFY wake-up (default true). */
  wakeup?: boolean | undefined
  /** Run the store's migrate() before relaying. */
  migrate?: boolean | undefined
}

/** An open store: the outbox, an optional wake-up hint, its event size limit, and how to release it. */
export interface OpenedStore {
  outbox: OutboxRepository<never>
  /** Hand it to the relay, which owns it and closes it in `stop()`; `close()` leaves it alone. */
  wakeup?: RelayWakeup | undefined
  /** The largest event the store accepts at enqueue (`capabilities.maxEventBytes`): the relay's claim bound follows it. */
  maxEventBytes: number
  /** Closes the client or pool (not the wakeup: the relay it was handed to closes that). */
  close(): Promise<void>
}

/** A store whose client is built but that has not talked to its server yet. */
export interface CreatedStore extends OpenedStore {
  migrate(): Promise<void>
  /**
   * Connects explicitly, for drivers that stay broken after a failed implicit connect:
   * MongoDB closes its topology when the first server selection fails, and every later
   * operation then fails with "Topology is closed" even once the server is up.
   */
  connect?(): Promise<void>
  /** The driver's last connection error, for drivers whose request errors hide it (ioredis). */
  lastConnectionError(): string | undefined
}

/** Loads a module by name: `import()` by default; tests inject a failing one. */
export type Importer = (specifier: string) => Promise<unknown>

export const nodeImporter: Importer = (specifier) => import(specifier)

const optional = <K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } =>
  (value === undefined ? {} : { [key]: value }) as { [P in K]?: V }

const isModuleNotFound = (error: unknown): boolean => {
  const code = (error as { code?: unknown } | null)?.code
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
}

/**
 * Imports a module that `packages` provide, turning "Cannot find package 'mysql2'" into
 * what to run: `npm i @txbox/mysql mysql2`.
 */
export const importFor = async <T>(
  importer: Importer,
  specifier: string,
  why: string,
  packages: readonly string[],
): Promise<T> => {
  try {
    return (await importer(specifier)) as T
  } catch (error) {
    if (!isModuleNotFound(error)) throw error
    const missing = /Cannot find (?:package|module) '([^']+)'/.exec(messageOf(error))?.[1] ?? specifier
    throw new ConfigurationError(
      `${why} needs ${packages.join(' and ')}, and ${JSON.stringify(missing)} is not installed: npm i ${packages.join(' ')}`,
      { cause: error },
    )
  }
}

/**
 * Loads the chosen store's adapter and driver and builds its client, without talking to
 * the server (so a failure here is configuration: a missing package, a URL or an option the
 * driver or adapter refuses) and throws {@link ConfigurationError}. SQLite opens its file
 * here: it has no server to wait for.
 */
export const createStore = async (
  config: StoreConfig,
  options: { logger?: TxboxLogger | undefined; importer?: Importer | undefined } = {},
): Promise<CreatedStore> => {
  const importer = options.importer ?? nodeImporter
  const packages = STORE_PACKAGES[config.kind]
  const load = <T>(specifier: string) => importFor<T>(importer, specifier, `--store ${config.kind}`, packages)
  const modules = await loadModules(config.kind, load)
  try {
    return build(config, modules, options.logger)
  } catch (error) {
    if (error instanceof ConfigurationError) throw error
    // The adapter validates its names (tablePrefix, keyPrefix, tableName, schema...); the
    // driver validates the URL.
    const flags =
      error instanceof TxboxError
        ? /\bschema\b/.test(error.message)
          ? `--schema ${JSON.stringify(config.schema)}`
          : `--prefix ${JSON.stringify(config.prefix)}`
        : `--url ${JSON.stringify(redactUrl(config.url))}`
    throw new ConfigurationError(`the ${config.kind} store refused ${flags}: ${messageOf(error)}`, {
      cause: error,
    })
  }
}

/** Builds the client, then runs `migrate()` when asked. Throws on any failure. */
export const openStore = async (
  config: StoreConfig,
  logger?: TxboxLogger,
  importer?: Importer,
): Promise<OpenedStore> => {
  const opened = await createStore(config, { logger, importer })
  if (config.migrate) {
    try {
      await opened.migrate()
    } catch (error) {
      await opened.close().catch(() => {})
      throw error
    }
  }
  return opened
}

type Load = <T>(specifier: string) => Promise<T>

type Modules =
  | {
      kind: 'sqlite'
      driver: { default: typeof import('better-sqlite3') }
      adapter: typeof import('@txbox/sqlite')
    }
  | { kind: 'postgres'; driver: typeof import('pg'); adapter: typeof import('@txbox/postgres') }
  | { kind: 'mysql'; driver: typeof import('mysql2/promise'); adapter: typeof import('@txbox/mysql') }
  | { kind: 'mongodb'; driver: typeof import('mongodb'); adapter: typeof import('@txbox/mongodb') }
  | { kind: 'redis'; driver: typeof import('ioredis'); adapter: typeof import('@txbox/redis') }
  | {
      kind: 'dynamodb'
      driver: typeof import('@aws-sdk/client-dynamodb')
      adapter: typeof import('@txbox/dynamodb')
    }

// The driver first: when both are missing, its name is the less obvious one to report.
const loadModules = async (kind: StoreKind, load: Load): Promise<Modules> => {
  switch (kind) {
    case 'sqlite':
      return { kind, driver: await load('better-sqlite3'), adapter: await load('@txbox/sqlite') }
    case 'postgres':
      return { kind, driver: await load('pg'), adapter: await load('@txbox/postgres') }
    case 'mysql':
      return { kind, driver: await load('mysql2/promise'), adapter: await load('@txbox/mysql') }
    case 'mongodb':
      return { kind, driver: await load('mongodb'), adapter: await load('@txbox/mongodb') }
    case 'redis':
      return { kind, driver: await load('ioredis'), adapter: await load('@txbox/redis') }
    case 'dynamodb':
      return { kind, driver: await load('@aws-sdk/client-dynamodb'), adapter: await load('@txbox/dynamodb') }
  }
}

/** How long a driver may take to connect before the attempt counts as failed. */
const CONNECT_TIMEOUT_MS = 5_000

const build = (config: StoreConfig, modules: Modules, logger: TxboxLogger | undefined): CreatedStore => {
  const never = () => undefined
  switch (modules.kind) {
    case 'sqlite': {
      const Database = modules.driver.default
      let db: InstanceType<typeof Database>
      try {
        db = new Database(config.url)
      } catch (error) {
        throw new ConfigurationError(
          `--store sqlite cannot open the database file ${JSON.stringify(config.url)} given by --url: ${messageOf(error)}`,
          { cause: error },
        )
      }
      const store = modules.adapter.createSqliteStore({ db, ...optional('tablePrefix', config.prefix) })
      return {
        outbox: store.outbox,
        migrate: store.migrate,
        maxEventBytes: store.capabilities.maxEventBytes,
        lastConnectionError: never,
        close: async () => {
          db.close()
        },
      }
    }
    case 'postgres': {
      const pg = modules.driver.default
      // pg parses the URL only when it connects; a client that never connects parses it now.
      new pg.Client({ connectionString: config.url })
      const pool = new pg.Pool({
        connectionString: config.url,
        max: 4,
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      })
      // An idle client that the server drops would otherwise crash the process; the pool
      // replaces it, and the next query reports a real failure through the relay.
      pool.on('error', (error) =>
        logger?.warn('idle PostgreSQL connection lost', { error: messageOf(error) }),
      )
      const store = modules.adapter.createPostgresStore({
        pool,
        ...optional('schema', config.schema),
        ...optional('tablePrefix', config.prefix),
      })
      // Nothing connects until the relay's first listen(): a wakeup never handed over holds nothing.
      const wakeup = config.wakeup === false ? undefined : store.createWakeup()
      return {
        outbox: store.outbox,
        migrate: store.migrate,
        maxEventBytes: store.capabilities.maxEventBytes,
        lastConnectionError: never,
        ...optional('wakeup', wakeup),
        close: () => pool.end(),
      }
    }
    case 'mysql': {
      const pool = modules.driver.createPool({
        uri: config.url,
        connectionLimit: 4,
        charset: 'utf8mb4_bin',
        connectTimeout: CONNECT_TIMEOUT_MS,
      })
      const store = modules.adapter.createMySqlStore({ pool, ...optional('tablePrefix', config.prefix) })
      return {
        outbox: store.outbox,
        migrate: store.migrate,
        maxEventBytes: store.capabilities.maxEventBytes,
        lastConnectionError: never,
        close: () => pool.end(),
      }
    }
    case 'mongodb': {
      // The driver waits serverSelectionTimeoutMS (30 s) before it reports an unreachable
      // server; shorter, so each attempt is logged soon. A value in the URL wins.
      const inUrl = /[?&]serverSelectionTimeoutMS=/i.test(config.url)
      const client = new modules.driver.MongoClient(config.url, {
        ...(inUrl ? {} : { serverSelectionTimeoutMS: CONNECT_TIMEOUT_MS }),
      })
      const store = modules.adapter.createMongoStore({
        db: client.db(config.database),
        ...optional('collectionPrefix', config.prefix),
      })
      return {
        outbox: store.outbox,
        migrate: store.migrate,
        maxEventBytes: store.capabilities.maxEventBytes,
        connect: async () => {
          await client.connect()
        },
        lastConnectionError: never,
        close: () => client.close(),
      }
    }
    case 'redis': {
      let lastError: string | undefined
      const redis = new modules.driver.Redis(config.url, { lazyConnect: true, maxRetriesPerRequest: 3 })
      // ioredis reconnects by itself and reports each failure as an event (unhandled, it
      // would print to the console); the request that gave up only says "max retries".
      redis.on('error', (error: unknown) => {
        lastError = messageOf(error)
        logger?.debug?.('redis connection error', { url: redactUrl(config.url), error: lastError })
      })
      redis.on('ready', () => {
        lastError = undefined
      })
      const store = modules.adapter.createRedisStore({ redis, ...optional('keyPrefix', config.prefix) })
      return {
        outbox: store.outbox,
        migrate: store.migrate,
        maxEventBytes: store.capabilities.maxEventBytes,
        lastConnectionError: () => lastError,
        close: async () => {
          await redis.quit().catch(() => redis.disconnect())
        },
      }
    }
    case 'dynamodb': {
      const local = !/amazonaws\.com/.test(config.url)
      const client = new modules.driver.DynamoDBClient({
        endpoint: config.url,
        region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
        // DynamoDB Local accepts any credentials; AWS itself uses the default provider chain.
        ...(local && process.env.AWS_ACCESS_KEY_ID === undefined
          ? { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }
          : {}),
      })
      const store = modules.adapter.createDynamoStore({ client, ...optional('tableName', config.prefix) })
      return {
        outbox: store.outbox,
        migrate: store.migrate,
        maxEventBytes: store.capabilities.maxEventBytes,
        lastConnectionError: never,
        close: async () => client.destroy(),
      }
    }
  }
}
