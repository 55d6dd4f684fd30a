import type { Clock } from './clock.js'
import { ValidationError } from './errors.js'
import { type ClassifyStorageError, runStorageOperation } from './kernel/storage-failure.js'
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

/** What an adapter's `connect<Db>` hands {@link storeConnection} once its driver client exists. */
export interface StoreConnectionParts<Store extends TxboxStore<unknown>, Client> {
  readonly adapter: string
  readonly classify: ClassifyStorageError
  readonly client: Client
  /** Builds the store on the client; when it refuses its options, the client is closed before the error is rethrown. */
  readonly createStore: () => Store
  /** Asks the server its product and version. */
  readonly serverVersion: () => Promise<string>
  /** Closes the client. Called at most once. */
  readonly close: () => Promise<void>
  /** The driver's last connection error, for drivers whose request errors hide it. */
  readonly lastConnectionError?: (() => string | undefined) | undefined
}

/**
 * The part of every `connect<Db>` that does not depend on the driver: the store built on the
 * client (a refused option closes the client instead of leaking it), `serverVersion` failures
 * classified like every storage call, and an idempotent `close`.
 */
export const storeConnection = <Store extends TxboxStore<unknown>, Client>(
  parts: StoreConnectionParts<Store, Client>,
): StoreConnection<Store, Client> => {
  let store: Store
  try {
    store = parts.createStore()
  } catch (error) {
    void parts.close().catch(() => {})
    throw error
  }
  let closed: Promise<void> | undefined
  return {
    store,
    client: parts.client,
    serverVersion: () =>
      runStorageOperation(parts.adapter, 'serverVersion', parts.classify, parts.serverVersion),
    lastConnectionError: parts.lastConnectionError ?? (() => undefined),
    close: () => {
      closed ??= parts.close()
      return closed
    },
  }
}

/**
 * Refuses, before any driver sees it, a URL whose scheme the store's driver never takes
 * (`schemes` like `['postgres:', 'postgresql:']`), with an example of a good one.
 */
export const checkUrlScheme = (
  adapter: string,
  url: unknown,
  schemes: readonly string[],
  example: string,
): string => {
  let scheme: string | undefined
  try {
    scheme = typeof url === 'string' ? new URL(url).protocol : undefined
  } catch {
    scheme = undefined
  }
  if (scheme === undefined || !schemes.includes(scheme)) {
    throw new ValidationError(
      adapter,
      `url must start with ${schemes.map((s) => `${s}//`).join(' or ')} (e.g. ${example}); got ${typeof url === 'string' ? (scheme === undefined ? 'no URL' : `scheme ${scheme}`) : typeof url}`,
    )
  }
  return url as string
}
