import {
  type ConnectOptions,
  checkUrlScheme,
  DEFAULT_CONNECT_TIMEOUT_MS,
  type StoreConnection,
  storeConnection,
  storeRegistration,
} from '@txbox/core'
import pg from 'pg'
import { ADAPTER, classifyPostgresError } from './errors.js'
import type { PostgresPartitioningOptions } from './postgres-partitions.js'
import { createPostgresStore, type PostgresStore } from './postgres-store.js'
import type { PostgresNotifyMode } from './sql.js'

/** Options of {@link connectPostgres}. */
export interface PostgresConnectOptions extends ConnectOptions {
  /** The schema holding the tables (default `public`). */
  readonly schema?: string | undefined
  /** The store's `notify` option (default `'waiting'`). */
  readonly notify?: PostgresNotifyMode | undefined
  /** The store's `channel` option. */
  readonly channel?: string | undefined
  /** The store's `preparedStatements` option (default `true`; `false` behind PgBouncer in transaction mode). */
  readonly preparedStatements?: boolean | undefined
  /**
   * The store's `partitioning` option: needed by a store that enqueues or receives on
   * time-partitioned tables; a relay maintains the partitions without it.
   */
  readonly partitioning?: PostgresPartitioningOptions | undefined
}

/** Connections in the pool when `poolSize` is not given: a relay claims on one, listens on one. */
const DEFAULT_POOL_SIZE = 4

/** A connection opened by {@link connectPostgres}: the store on a pg Pool that it owns. */
export type PostgresConnection = StoreConnection<PostgresStore, pg.Pool>

/**
 * Opens the PostgreSQL store at `url` (`postgres://...`) on a new pg Pool. Nothing talks to
 * the server until the first query, but the URL is parsed here, so a malformed one fails at
 * once. `close()` ends the pool.
 */
export const connectPostgres = (url: string, options: PostgresConnectOptions = {}): PostgresConnection => {
  const { schemes, example } = storeRegistration('postgres')
  checkUrlScheme(ADAPTER, url, schemes, example)
  // pg parses the URL only when it connects; a client that never connects parses it now.
  new pg.Client({ connectionString: url })
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? DEFAULT_POOL_SIZE,
    connectionTimeoutMillis: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
  })
  // An idle client that the server drops would otherwise crash the process (an 'error'
  // event without a listener); the pool replaces it, and the next query reports the failure.
  pool.on('error', (error) =>
    options.logger?.warn('idle PostgreSQL connection lost', { error: error.message }),
  )
  return storeConnection({
    adapter: ADAPTER,
    classify: classifyPostgresError,
    client: pool,
    createStore: () =>
      createPostgresStore({
        pool,
        schema: options.schema,
        tablePrefix: options.prefix,
        clock: options.clock,
        notify: options.notify,
        channel: options.channel,
        maxEventBytes: options.maxEventBytes,
        preparedStatements: options.preparedStatements,
        partitioning: options.partitioning,
      }),
    serverVersion: async () => {
      const result = await pool.query<{ server_version: string }>('SHOW server_version')
      return `PostgreSQL ${result.rows[0]?.server_version ?? 'unknown'}`
    },
    close: () => pool.end(),
  })
}
