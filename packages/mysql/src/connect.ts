import {
  type ConnectOptions,
  checkUrlScheme,
  DEFAULT_CONNECT_TIMEOUT_MS,
  type StoreConnection,
  storeConnection,
  storeRegistration,
} from '@txbox/core'
import { createPool, type Pool } from 'mysql2/promise'
import { detectDialect } from './dialect.js'
import { ADAPTER, classifyMySqlError } from './errors.js'
import type { RetryEvent } from './mysql-options.js'
import { createMySqlStore, type MySqlStore } from './mysql-store.js'

/** Options of {@link connectMySql}. */
export interface MySqlConnectOptions extends ConnectOptions {
  /** The store's `onRetry` (see `MySqlStoreOptions`). */
  readonly onRetry?: ((event: RetryEvent) => void) | undefined
}

/** A MySQL / MariaDB store opened from a URL, on a mysql2 pool of its own. */
export type MySqlConnection = StoreConnection<MySqlStore, Pool>

/** mysql2's own default `connectionLimit`. */
const DEFAULT_POOL_SIZE = 10

/**
 * Opens a store from `mysql://user:password@host:3306/database` (or `mariadb://`): a mysql2
 * pool with the settings the adapter needs (the `utf8mb4_bin` charset, so emoji survive;
 * a connection timeout, default 5 s) and the store on it. Nothing talks to the server
 * until the first call (`serverVersion()`, `store.migrate()`...). Query-string options of
 * the URL go to mysql2 as its pool options.
 */
export const connectMySql = (url: string, options: MySqlConnectOptions = {}): MySqlConnection => {
  const { schemes, example } = storeRegistration('mysql')
  checkUrlScheme(ADAPTER, url, schemes, example)
  const pool = createPool({
    uri: url,
    connectionLimit: options.poolSize ?? DEFAULT_POOL_SIZE,
    charset: 'utf8mb4_bin',
    connectTimeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
  })
  return storeConnection({
    adapter: ADAPTER,
    classify: classifyMySqlError,
    client: pool,
    createStore: () =>
      createMySqlStore({
        pool,
        tablePrefix: options.prefix,
        clock: options.clock,
        maxEventBytes: options.maxEventBytes,
        onRetry: options.onRetry,
      }),
    serverVersion: async () => (await detectDialect(pool)).label,
    close: () => pool.end(),
  })
}
