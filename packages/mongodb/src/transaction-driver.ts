import { type TransactionDriver, ValidationError } from '@txbox/core'
import type { ClientSession } from 'mongodb'
import type { MongoDbClient } from './client.js'
import { ADAPTER } from './errors.js'

/**
 * How `store.transaction` runs on MongoDB: a session of the store's own MongoClient with a
 * transaction started on it, committed or aborted, then ended. A server without
 * transactions (a standalone mongod, FerretDB v1) is refused at begin, before `fn` runs:
 * running `fn` without one would give none of the atomicity the caller asked for.
 */
export const mongoDbTransactionDriver = (client: MongoDbClient): TransactionDriver<ClientSession> => ({
  begin: async () => {
    const runtime = await client.runtime()
    if (!runtime.transactions) {
      throw new ValidationError(
        ADAPTER,
        `store.transaction() needs a server with multi-document transactions (capabilities.transactions 'native'); ${runtime.serverVersion} has none: ${runtime.transactionsNote ?? 'it has no transactions'}. Write without a transaction (the event is then not atomic with your business write).`,
      )
    }
    const session = client.db.client.startSession()
    try {
      session.startTransaction()
    } catch (error) {
      await session.endSession()
      throw error
    }
    return session
  },
  commit: async (session) => {
    await session.commitTransaction()
  },
  rollback: async (session) => {
    if (session.inTransaction()) await session.abortTransaction()
  },
  // endSession aborts a transaction still open and gives the server session back to the pool.
  release: (session) => session.endSession(),
})
