import {
  type ConnectOptions,
  DEFAULT_CONNECT_TIMEOUT_MS,
  type StoreConnection,
  storeConnection,
  storeRegistration,
  ValidationError,
} from '@txbox/core'
import { MongoClient, type MongoClientOptions } from 'mongodb'
import { ADAPTER, classifyMongoDbError } from './errors.js'
import type { WriteGuard } from './mongodb-options.js'
import { createMongoDbStore, type MongoDbStore } from './mongodb-store.js'
import { detectServer } from './server.js'

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
 * Refuses a URL the driver never takes. Not core's `checkUrlScheme`: a seed list
 * (`mongodb://h1:27017,h2:27017/app`) is no WHATWG URL, so only the scheme is compared.
 */
const checkMongoDbUrl = (url: unknown): string => {
  const { schemes, example } = storeRegistration('mongodb')
  if (typeof url !== 'string' || !schemes.some((scheme) => url.startsWith(`${scheme}//`))) {
    throw new ValidationError(
      ADAPTER,
      `url must be a ${schemes.map((scheme) => `${scheme}//`).join(' or ')} URL, e.g. ${example}`,
    )
  }
  return url
}

/**
 * Builds a MongoClient for `url` with the settings txbox needs and the store on it,
 * without talking to the server (the driver parses the URL here, so a malformed one fails
 * at once). Server selection and the socket connect give up after `connectTimeoutMs`
 * (default 5 s, instead of the driver's 30 s) unless the URL sets them.
 */
export const connectMongoDb = (url: string, options: MongoDbConnectOptions = {}): MongoDbConnection => {
  checkMongoDbUrl(url)
  const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS
  const driverOptions: MongoClientOptions = {}
  if (!/[?&]serverSelectionTimeoutMS=/i.test(url)) driverOptions.serverSelectionTimeoutMS = timeoutMs
  if (!/[?&]connectTimeoutMS=/i.test(url)) driverOptions.connectTimeoutMS = timeoutMs
  if (options.poolSize !== undefined) driverOptions.maxPoolSize = options.poolSize
  let client: MongoClient
  try {
    client = new MongoClient(url, driverOptions)
  } catch (error) {
    // The driver's message names the part it could not parse, never the password.
    throw new ValidationError(
      ADAPTER,
      `url is not a valid MongoDB connection string: ${error instanceof Error ? error.message : String(error)}`,
    )
  }
  const db = client.db(options.database)
  const connection = storeConnection({
    adapter: ADAPTER,
    classify: classifyMongoDbError,
    client,
    createStore: () =>
      createMongoDbStore({
        db,
        collectionPrefix: options.prefix,
        clock: options.clock,
        maxEventBytes: options.maxEventBytes,
        writeGuard: options.writeGuard,
      }),
    serverVersion: async () => {
      await client.connect()
      return (await detectServer(db, 'auto')).serverVersion
    },
    close: () => client.close(),
  })
  return {
    ...connection,
    connect: async () => {
      await client.connect()
    },
  }
}
