import {
  type ConnectOptions,
  DEFAULT_CONNECT_TIMEOUT_MS,
  runStorageOperation,
  type StoreConnection,
  ValidationError,
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

const URL_SCHEMES = ['mysql:', 'mariadb:']

/**
 * Opens a store from `mysql://user:password@host:3306/database` (or `mariadb://`): a mysql2
 * pool with the settings the adapter needs (the `utf8mb4_bin` charset, so emoji survive;
 * a connection timeout, default 5 s) and the store on it. Nothing talks to the server
 * until the first call (`serverVersion()`, `store.migrate()`...). Query-string options of
 * the URL go to mysql2 as its pool options.
 */
export const connectMySql = (url: string, options: MySqlConnectOptions = {}): MySqlConnection => {
  let scheme: string | undefined
  try {
    scheme = new URL(url).protocol
  } catch {
    scheme = undefined
  }
  if (scheme === undefined || !URL_SCHEMES.includes(scheme)) {
    throw new ValidationError(
      ADAPTER,
      'url must be a mysql:// or mariadb:// URL with the database in its path, e.g. mysql://user:password@localhost:3306/app',
    )
  }
  const pool = createPool({
    uri: url,
    connectionLimit: options.poolSize ?? DEFAULT_POOL_SIZE,
    charset: 'utf8mb4_bin',
    connectTimeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
  })
  let store: MySqlStore
  try {
    store = createMySqlStore({
      pool,
      tablePrefix: options.prefix,
      clock: options.clock,
      maxEventBytes: options.maxEventBytes,
      onRetry: options.onRetry,
    })
  } catch (error) {
    // A bad prefix or maxEventBytes: the pool has no connection yet, but is not left behind.
    void pool.end()
    throw error
  }
  let ended: Promise<void> | undefined
  return {
    store,
    client: pool,
    serverVersion: () =>
      runStorageOperation(
        ADAPTER,
        'serverVersion',
        classifyMySqlError,
        async () => (await detectDialect(pool)).label,
      ),
    // mysql2 reports a connection failure on the query that needed the connection.
    lastConnectionError: () => undefined,
    close: () => {
      ended ??= pool.end()
      return ended
    },
  }
}
