import { readFileSync } from 'node:fs'
import type { ConformanceFixture, ConformanceTarget, Oracle, ServerConnection } from '@txbox/conformance'
import { uniqueSuffix } from '@txbox/conformance'
import { ValidationError } from '@txbox/core'
import type { ClientSession, Db, MongoClient } from 'mongodb'
import { connectMongoDb } from './connect.js'
import { ADAPTER } from './errors.js'
import { collectionNames } from './mongodb-options.js'
import { createMongoDbStore, mongoDbCapabilities } from './mongodb-store.js'
import { encode, type InboxDocument, type OutboxDocument, toInboxEvent, toOutboxEvent } from './rows.js'

/** The adapter's version, from its package.json (the same file above `src/` and `dist/`). */
const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version

/**
 * The MongoDB adapter under certification. `setup` probes the deployment: on FerretDB v1
 * or a standalone mongod the transaction cases are skipped with the reason; on a replica
 * set they run. Each fixture is a fresh `t_<suffix>_` collection prefix in the URL's
 * database, dropped by `dispose`.
 */
export const createConformanceTarget = (): ConformanceTarget<ClientSession> => {
  let client: MongoClient | undefined
  let db: Db | undefined
  let url: string | undefined
  let transactions = false

  const connected = (): { client: MongoClient; db: Db } => {
    if (!client || !db) throw new Error('[txbox] [mongodb] conformance target: setup() has not connected')
    return { client, db }
  }

  return {
    name: ADAPTER,
    version: VERSION,
    engine: 'mongodb',
    capabilities: mongoDbCapabilities,

    async setup(server: ServerConnection | undefined) {
      if (!server) throw new Error('[txbox] [mongodb] conformance target needs a MongoDB server URL')
      url = server.url
      client = connectMongoDb(server.url, { connectTimeoutMs: 10_000 }).client
      await client.connect()
      db = client.db()
      await waitForWritablePrimary(db)
      const probe = createMongoDbStore({ db, collectionPrefix: `t_probe_${uniqueSuffix()}_` })
      const capabilities = await probe.detectCapabilities()
      transactions = capabilities.transactions !== 'none'
      return { serverVersion: await probe.serverVersion(), capabilities }
    },

    async create({ clock }): Promise<ConformanceFixture<ClientSession>> {
      const { client, db } = connected()
      const prefix = `t_${uniqueSuffix()}_`
      const store = createMongoDbStore({ db, collectionPrefix: prefix, clock })
      await store.migrate()
      const names = collectionNames(prefix)
      const outbox = db.collection<OutboxDocument>(names.outbox)
      const inbox = db.collection<InboxDocument>(names.inbox)

      // Raw reads that bypass the repositories; they only undo the text codec.
      const oracle: Oracle = {
        outbox: async (eventId) => {
          const doc = await outbox.findOne({ _id: encode(eventId) })
          return doc ? toOutboxEvent(doc) : null
        },
        inbox: async (eventId) => {
          const doc = await inbox.findOne({ _id: encode(eventId) })
          return doc ? toInboxEvent(doc) : null
        },
        outboxCount: () => outbox.countDocuments({}),
        inboxCount: () => inbox.countDocuments({}),
      }

      return {
        outbox: store.outbox,
        inbox: store.inbox,
        migrate: () => store.migrate(),
        oracle,
        // Its own MongoClient: its own connection pool, as another process would have.
        async peer() {
          const peerClient = connectMongoDb(url ?? '', { connectTimeoutMs: 10_000 }).client
          await peerClient.connect()
          const peerStore = createMongoDbStore({
            db: peerClient.db(db.databaseName),
            collectionPrefix: prefix,
            clock,
          })
          return {
            outbox: peerStore.outbox,
            inbox: peerStore.inbox,
            dispose: () => peerClient.close(),
            breakConnection: () => peerClient.close(),
          }
        },
        async transaction<T>(
          fn: (tx: ClientSession) => Promise<T>,
          options?: { rollback?: boolean },
        ): Promise<T> {
          if (!transactions) {
            const { transactionsNote } = await store.detectCapabilities()
            throw new ValidationError(
              ADAPTER,
              `this server has no transactions: ${transactionsNote ?? 'unknown reason'}`,
            )
          }
          const session = client.startSession()
          try {
            session.startTransaction()
            let result: T
            try {
              result = await fn(session)
            } catch (error) {
              await session.abortTransaction()
              throw error
            }
            if (options?.rollback) await session.abortTransaction()
            else await session.commitTransaction()
            return result
          } finally {
            await session.endSession()
          }
        },
        storeTransaction: store.transaction,
        // A session of another MongoClient (its own pool), inside its own transaction: the
        // driver cannot run a session on a client that did not start it.
        async foreignTransaction<T>(fn: (tx: ClientSession) => Promise<T>): Promise<T> {
          const otherClient = connectMongoDb(url ?? '', { connectTimeoutMs: 10_000 }).client
          await otherClient.connect()
          const session = otherClient.startSession()
          try {
            session.startTransaction()
            const result = await fn(session)
            await session.commitTransaction()
            return result
          } finally {
            await session.endSession()
            await otherClient.close()
          }
        },
        async dispose() {
          for (const name of Object.values(names)) {
            await db
              .collection(name)
              .drop()
              .catch((error: unknown) => {
                // 26 NamespaceNotFound: never created, nothing to drop.
                if ((error as { code?: unknown }).code !== 26) throw error
              })
          }
        },
      }
    },

    async teardown() {
      await client?.close()
      client = undefined
      db = undefined
    },
  }
}

/**
 * A replica set that was just initiated (the testcontainers preset runs `rs.initiate()`)
 * answers before it has elected itself primary; probing it then would see no writable
 * primary. Wait for one, with a deadline, instead of sleeping a fixed time.
 */
const waitForWritablePrimary = async (db: Db): Promise<void> => {
  const deadline = Date.now() + 30_000
  for (;;) {
    const hello = await db.command({ hello: 1 }).catch(() => db.command({ isMaster: 1 }))
    const writable = hello.isWritablePrimary === true || hello.ismaster === true
    if (writable || Date.now() > deadline) return
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}
