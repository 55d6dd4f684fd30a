import { messageOf, type OutboxRepository, type RelayWakeup, type TxboxLogger } from '@txbox/core'

/** The stores the relay can open. */
export const STORE_KINDS = ['sqlite', 'postgres', 'mysql', 'mongodb', 'redis', 'dynamodb'] as const
export type StoreKind = (typeof STORE_KINDS)[number]

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

/** An open store: the outbox, an optional wake-up hint, and how to release everything. */
export interface OpenedStore {
  outbox: OutboxRepository<never>
  wakeup?: RelayWakeup | undefined
  close(): Promise<void>
}

const optional = <K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } =>
  (value === undefined ? {} : { [key]: value }) as { [P in K]?: V }

/**
 * Opens the chosen store. Each branch imports its adapter and driver dynamically, so only
 * the chosen database's driver has to be installed.
 */
export const openStore = async (config: StoreConfig, logger?: TxboxLogger): Promise<OpenedStore> => {
  const opened = await open(config, logger)
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

const open = async (
  config: StoreConfig,
  logger: TxboxLogger | undefined,
): Promise<OpenedStore & { migrate(): Promise<void> }> => {
  switch (config.kind) {
    case 'sqlite': {
      const { default: Database } = await import('better-sqlite3')
      const { createSqliteStore } = await import('@txbox/sqlite')
      const db = new Database(config.url)
      const store = createSqliteStore({ db, ...optional('tablePrefix', config.prefix) })
      return {
        outbox: store.outbox,
        migrate: store.migrate,
        close: async () => {
          db.close()
        },
      }
    }
    case 'postgres': {
      const { default: pg } = await import('pg')
      const { createPostgresStore } = await import('@txbox/postgres')
      const pool = new pg.Pool({ connectionString: config.url, max: 4 })
      // An idle client that the server drops would otherwise crash the process; the pool
      // replaces it, and the next query reports a real failure through the relay.
      pool.on('error', (error) =>
        logger?.warn('idle PostgreSQL connection lost', { error: messageOf(error) }),
      )
      const store = createPostgresStore({
        pool,
        ...optional('schema', config.schema),
        ...optional('tablePrefix', config.prefix),
      })
      const wakeup = config.wakeup === false ? undefined : store.createWakeup()
      return {
        outbox: store.outbox,
        migrate: store.migrate,
        ...(wakeup
          ? { wakeup: { wait: (signal: AbortSignal) => wakeup.wait(signal), listen: () => wakeup.listen() } }
          : {}),
        close: async () => {
          await wakeup?.close().catch(() => {})
          await pool.end()
        },
      }
    }
    case 'mysql': {
      const { createPool } = await import('mysql2/promise')
      const { createMySqlStore } = await import('@txbox/mysql')
      const pool = createPool({ uri: config.url, connectionLimit: 4, charset: 'utf8mb4_bin' })
      const store = createMySqlStore({ pool, ...optional('tablePrefix', config.prefix) })
      return { outbox: store.outbox, migrate: store.migrate, close: () => pool.end() }
    }
    case 'mongodb': {
      const { MongoClient } = await import('mongodb')
      const { createMongoStore } = await import('@txbox/mongodb')
      const client = new MongoClient(config.url)
      await client.connect()
      const store = createMongoStore({
        db: client.db(config.database),
        ...optional('collectionPrefix', config.prefix),
      })
      return { outbox: store.outbox, migrate: store.migrate, close: () => client.close() }
    }
    case 'redis': {
      const { Redis } = await import('ioredis')
      const { createRedisStore } = await import('@txbox/redis')
      const redis = new Redis(config.url, { lazyConnect: false, maxRetriesPerRequest: 3 })
      const store = createRedisStore({ redis, ...optional('keyPrefix', config.prefix) })
      return {
        outbox: store.outbox,
        migrate: store.migrate,
        close: async () => {
          await redis.quit()
        },
      }
    }
    case 'dynamodb': {
      const { DynamoDBClient } = await import('@aws-sdk/client-dynamodb')
      const { createDynamoStore } = await import('@txbox/dynamodb')
      const local = !/amazonaws\.com/.test(config.url)
      const client = new DynamoDBClient({
        endpoint: config.url,
        region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
        // DynamoDB Local accepts any credentials; AWS itself uses the default provider chain.
        ...(local && process.env.AWS_ACCESS_KEY_ID === undefined
          ? { credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }
          : {}),
      })
      const store = createDynamoStore({ client, ...optional('tableName', config.prefix) })
      return { outbox: store.outbox, migrate: store.migrate, close: async () => client.destroy() }
    }
  }
}
