import { ValidationError } from '@txbox/core'
import type { ClientSession, Db } from 'mongodb'
import type { Connection, ClientSession as MongooseClientSession } from 'mongoose'
import { ADAPTER } from '../errors.js'

/**
 * The driver `Db` under a connected Mongoose connection, to create the store on:
 * `createMongoDbStore({ db: mongooseDb(mongoose.connection) })`. Mongoose bundles its own
 * copy of the mongodb driver, whose types may differ from the `mongodb` txbox is typed
 * with even though the objects are the same kind; this answers it under txbox's type.
 */
export const mongooseDb = (connection: Connection): Db => {
  const candidate = connection as Partial<Connection> | null
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    typeof candidate.startSession !== 'function' ||
    typeof candidate.transaction !== 'function'
  ) {
    throw new ValidationError(
      ADAPTER,
      'expected a Mongoose Connection (mongoose.connection or mongoose.createConnection(...))',
    )
  }
  const db = candidate.db as unknown as Partial<Db> | undefined
  if (db === undefined || db === null || typeof db.collection !== 'function') {
    throw new ValidationError(
      ADAPTER,
      'the Mongoose connection is not connected yet (connection.db is undefined): await mongoose.connect(url) or createConnection(url).asPromise() first',
    )
  }
  return db as Db
}

/**
 * A Mongoose session (`connection.startSession()`, or the one `connection.transaction(fn)`
 * passes to `fn`) as txbox's `{ tx }`: it is the driver's ClientSession, typed with
 * Mongoose's copy of the driver. The store checks it like any session, before any write:
 * a session of this store's client, not ended, in a transaction, on a server that has them.
 */
export const mongooseSession = (session: MongooseClientSession): ClientSession => {
  const candidate = session as unknown as Partial<ClientSession> | null
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    typeof candidate.inTransaction !== 'function' ||
    typeof candidate.endSession !== 'function'
  ) {
    throw new ValidationError(
      ADAPTER,
      'expected a Mongoose session (connection.startSession(), or the session connection.transaction(fn) passes to fn)',
    )
  }
  return session as unknown as ClientSession
}
