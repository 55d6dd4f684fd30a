import type { Clock } from './clock.js'
import type { TxboxLogger } from './logger.js'
import type { TxboxStore } from './store.js'

/**
 * Options every adapter's `connect<Db>(url, options)` takes. Each adapter adds its own
 * (PostgreSQL's `schema`, MongoDB's `database`...) and reads the store's own options from
 * `store`.
 */
export interface ConnectOptions {
  /** The table prefix (SQL), collection prefix (MongoDB), key prefix (Redis) or table name (DynamoDB). */
  readonly prefix?: string | undefined
  readonly clock?: Clock | undefined
  /** The store's `maxEventBytes` option. */
  readonly maxEventBytes?: number | undefined
  /** Connections in the driver's pool, for the drivers that pool. */
  readonly poolSize?: number | undefined
  /** How long one connection attempt may take before it fails. Default 5,000 ms. */
  readonly connectTimeoutMs?: number | undefined
  /** Where driver events that have no caller to throw to (a dropped idle connection) are logged. */
  readonly logger?: TxboxLogger | undefined
}

/** The connection timeout when `connectTimeoutMs` is not given. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000

/**
 * A store opened from a URL by an adapter's `connect<Db>`: the driver client built with the
 * settings txbox needs (charset, credentials rule, timeouts), the store on it, and how to
 * close both. Building it does not talk to the server (SQLite opens its file), so a failure
 * there is configuration: a URL or an option that can never work.
 */
export interface StoreConnection<Store extends TxboxStore<unknown>, Client> {
  readonly store: Store
  /** The driver's own client or pool: for your own queries and to open `{ tx }` handles. */
  readonly client: Client
  /** Talks to the server once and answers its product and version (`PostgreSQL 16.4`). */
  serverVersion(): Promise<string>
  /** The driver's last connection error, for drivers whose request errors hide it; else undefined. */
  lastConnectionError(): string | undefined
  /** Closes the client (a pool: all its connections). Idempotent. */
  close(): Promise<void>
}
