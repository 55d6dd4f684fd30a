import {
  type ConnectOptions,
  DEFAULT_CONNECT_TIMEOUT_MS,
  type StoreConnection,
  ValidationError,
} from '@txbox/core'
import { MongoClient, type MongoClientOptions } from 'mongodb'
import { ADAPTER } from './errors.js'
import type { WriteGuard } from './mongodb-options.js'
import { createMongoDbStore, type MongoDbStore } from './mongodb-store.js'

/** {@link connectMongoDb}'s options: core's, plus the database and the write guard. */
export interface MongoDbConnectOptions extends ConnectOptions {
  /** The database to store into. Default: the one in the URL's path (the driver's `test` without one). */
  readonly database?: string | undefined
  /** The store's `writeGuard` (default `auto`). */
  readonly writeGuard?: WriteGuard | undefined
}

/** A MongoDB store opened from a URL. */
export interface MongoDbConnection extends StoreConnection<MongoDbStore, MongoClient> {
  /**
   * Connects explicitly. The driver connects by itself on the first operation, but when
   * that first server selection fails it closes its topology and every later operation
   * fails with "Topology is closed" even once the server is up; a caller that retries
   * (the relay at start-up) calls this first.
   */
  connect(): Promise<void>
}

/**
 * Builds a MongoClient for `url` with the settings txbox needs and the store on it,
 * without talking to the server. Server selection gives up after `connectTimeoutMs`
 * (default 5 s, instead of the driver's 30 s) unless the URL sets `serverSelectionTimeoutMS`.
 */
export const connectMongoDb = (url: string, options: MongoDbConnectOptions = {}): MongoDbConnection => {
  if (typeof url !== 'string' || !/^mongodb(\+srv)?:\/\//.test(url))
    throw new ValidationError(ADAPTER, 'url must start with mongodb:// or mongodb+srv://')
  const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS
  const driverOptions: MongoClientOptions = {}
  if (!/[?&]serverSelectionTimeoutMS=/i.test(url)) driverOptions.serverSelectionTimeoutMS = timeoutMs
  if (!/[?&]connectTimeoutMS=/i.test(url)) driverOptions.connectTimeoutMS = timeoutMs
  if (options.poolSize !== undefined) driverOptions.maxPoolSize = options.poolSize
  let client: MongoClient
  try {
    client = new MongoClient(url, driverOptions)
  } catch (error) {
    // A URL the driver cannot parse (its message names the part, never the password).
    throw new ValidationError(
      ADAPTER,
      `url is not a valid MongoDB connection string: ${error instanceof Error ? error.message : String(error)}`,
    )
  }
  const store = createMongoDbStore({
    db: client.db(options.database),
    collectionPrefix: options.prefix,
    clock: options.clock,
    maxEventBytes: options.maxEventBytes,
    writeGuard: options.writeGuard,
  })
  let closed: Promise<void> | undefined
  return {
    store,
    client,
    connect: async () => {
      await client.connect()
    },
    serverVersion: async () => {
      await client.connect()
      return store.serverVersion()
    },
    lastConnectionError: () => undefined,
    close: () => {
      closed ??= client.close()
      return closed
    },
  }
}
