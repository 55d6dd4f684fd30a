import { randomUUID } from 'node:crypto'
import { ValidationError } from '@txbox/core'
import { MongoClient } from 'mongodb'
import mongoose, { type Connection } from 'mongoose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMongoDbStore, type MongoDbStore } from '../src/index.js'
import { collectionNames } from '../src/mongodb-options.js'
import { mongooseDb, mongooseSession } from '../src/orm/mongoose.js'

const url = process.env.TXBOX_MONGODB_URL
if (!url && process.env.TXBOX_REQUIRE_ALL === '1') {
  throw new Error(
    'TXBOX_REQUIRE_ALL=1 but TXBOX_MONGODB_URL is not set: start it with scripts/services.sh up mongodb',
  )
}

/** Whether the server has transactions, asked once before the tests are declared. */
const serverHasTransactions = async (): Promise<boolean> => {
  if (!url) return false
  const client = await new MongoClient(url).connect()
  try {
    const store = createMongoDbStore({ db: client.db(), collectionPrefix: 'probe_' })
    return (await store.detectCapabilities()).transactions === 'native'
  } finally {
    await client.close()
  }
}
const transactions = await serverHasTransactions()

const event = (eventId: string) => ({ eventId, subject: 'orders.created', payload: '{}' })

/**
 * store.transaction and the handles of Mongoose, on the server of TXBOX_MONGODB_URL. Here that
 * is FerretDB v1, which has no transactions: what it allows is tested; the commit/rollback
 * tests run only against a replica set (none can be installed on this machine).
 */
describe.skipIf(!url)('MongoDB store.transaction and Mongoose sessions (TXBOX_MONGODB_URL)', () => {
  let connection: Connection
  let other: MongoClient
  const prefixes: string[] = []

  beforeAll(async () => {
    connection = await mongoose.createConnection(url ?? '').asPromise()
    other = await new MongoClient(url ?? '').connect()
  })

  afterAll(async () => {
    for (const prefix of prefixes)
      for (const name of Object.values(collectionNames(prefix)))
        await connection.db
          ?.collection(name)
          .drop()
          .catch(() => {})
    await connection?.close()
    await other?.close()
  })

  /** A migrated store on the Mongoose connection's Db: the pattern of docs/orm/mongoose.md. */
  const mongooseStore = async (): Promise<MongoDbStore> => {
    const prefix = `t_${randomUUID().replaceAll('-', '').slice(0, 12)}_`
    prefixes.push(prefix)
    const store = createMongoDbStore({ db: mongooseDb(connection), collectionPrefix: prefix })
    await store.migrate()
    return store
  }

  it.skipIf(transactions)(
    'store.transaction on a server without transactions throws a ValidationError naming the capability, before fn',
    async () => {
      const store = await mongooseStore()
      let called = false
      const error = await store
        .transaction(
          async () => {
            called = true
          },
          { retries: 2 },
        )
        .catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ValidationError)
      expect((error as Error).message).toMatch(
        /^\[txbox\] \[mongodb\] store\.transaction\(\) needs a server with multi-document transactions \(capabilities\.transactions 'native'\); FerretDB .* has none: FerretDB v1 has no multi-document transactions/,
      )
      expect(called).toBe(false)
      expect((await store.detectCapabilities()).transactions).toBe('none')
    },
  )

  it.skipIf(transactions)(
    "accepts Mongoose's sessions as the driver's ClientSession; without transactions { tx } is refused before any write",
    async () => {
      const store = await mongooseStore()
      const session = await connection.startSession()
      try {
        session.startTransaction()
        await expect(
          store.outbox.findOrCreate(event('in-session'), { tx: mongooseSession(session) }),
        ).rejects.toThrow(
          /\{ tx \} is not supported by this server: FerretDB v1 has no multi-document transactions/,
        )
        await session.abortTransaction()
      } finally {
        await session.endSession()
      }
      // connection.transaction(): FerretDB v1 refuses the transaction's first write itself.
      await expect(
        connection.transaction(async (tx) => {
          await store.outbox.findOrCreate(event('in-mongoose-transaction'), { tx: mongooseSession(tx) })
        }),
      ).rejects.toBeInstanceOf(ValidationError)
      await expect(
        connection.transaction(async (tx) => {
          await connection.db?.collection('orders_unused').insertOne({ _id: 1 } as never, { session: tx })
        }),
      ).rejects.toThrow(/autocommit/)
      expect(await store.outbox.get('in-session')).toBeNull()
      expect(await store.outbox.get('in-mongoose-transaction')).toBeNull()
      // Without a transaction the enqueue works; it is then not atomic with a business write.
      await store.outbox.findOrCreate(event('plain'))
      expect(await store.outbox.get('plain')).toMatchObject({ status: 'pending' })
    },
  )

  it("works on the Db of Mongoose's own copy of the driver: its duplicate keys and errors are recognised", async () => {
    const store = await mongooseStore()
    await store.migrate()
    const first = await store.outbox.findOrCreate({ ...event('dup'), payload: '"first"' })
    const again = await store.outbox.findOrCreate({ ...event('dup'), payload: '"second"' })
    expect(again).toEqual(first)
    expect(again.payload).toBe('"first"')
    const many = await store.outbox.findOrCreateMany([event('dup'), event('dup-2')])
    expect(many.map((e) => e.payload)).toEqual(['"first"', '{}'])
    const params = { ...event('in-dup'), stream: 'S', streamSeq: 1 }
    expect((await store.inbox.findOrCreate(params)).deliveries).toBe(1)
    expect((await store.inbox.findOrCreate(params)).deliveries).toBe(2)
  })

  it('mongooseDb and mongooseSession refuse what is not a connected Mongoose connection or a session', async () => {
    expect(() => mongooseDb(mongoose.createConnection())).toThrow(
      /the Mongoose connection is not connected yet \(connection\.db is undefined\)/,
    )
    expect(() => mongooseDb(connection.db as never)).toThrow(/expected a Mongoose Connection/)
    expect(() => mongooseSession(connection as never)).toThrow(/expected a Mongoose session/)
    expect(() => mongooseSession(undefined as never)).toThrow(/expected a Mongoose session/)
  })

  it('refuses a session of another client, an ended session and what is not a session, naming them', async () => {
    const store = await mongooseStore()
    const foreign = other.startSession()
    try {
      await expect(store.outbox.findOrCreate(event('foreign'), { tx: foreign })).rejects.toThrow(
        /tx is a ClientSession of another MongoClient than the store's/,
      )
      await expect(store.inbox.markAsProcessed('foreign', { tx: foreign })).rejects.toThrow(
        /another MongoClient/,
      )
    } finally {
      await foreign.endSession()
    }
    const ended = await connection.startSession()
    await ended.endSession()
    await expect(store.outbox.findOrCreate(event('ended'), { tx: mongooseSession(ended) })).rejects.toThrow(
      /tx is a ClientSession that has already ended/,
    )
    await expect(store.outbox.findOrCreate(event('conn'), { tx: connection as never })).rejects.toThrow(
      /tx must be a mongodb ClientSession .*; got a NativeConnection/,
    )
    await expect(store.outbox.findOrCreate(event('db'), { tx: connection.db as never })).rejects.toThrow(
      /got a Db$/,
    )
    for (const id of ['foreign', 'ended', 'conn', 'db']) expect(await store.outbox.get(id)).toBeNull()
  })

  // Runs only against a replica set or sharded cluster (not available on this machine).
  it.runIf(transactions)(
    'on a server with transactions: Mongoose write and enqueue commit together and roll back together',
    async () => {
      const store = await mongooseStore()
      const Order = connection.model('TxboxOrder', new mongoose.Schema({ _id: Number, total: Number }))
      await connection.transaction(async (session) => {
        await Order.create([{ _id: 1, total: 9.5 }], { session })
        await store.outbox.findOrCreate(event('order-1'), { tx: mongooseSession(session) })
      })
      await expect(
        connection.transaction(async (session) => {
          await Order.create([{ _id: 2, total: 1 }], { session })
          await store.outbox.findOrCreate(event('order-2'), { tx: mongooseSession(session) })
          throw new Error('declined')
        }),
      ).rejects.toThrow('declined')
      await expect(
        store.transaction(async (session) => {
          await Order.create([{ _id: 3, total: 1 }], { session: session as never })
          await store.outbox.findOrCreate(event('order-3'))
          throw new Error('declined')
        }),
      ).rejects.toThrow('declined')
      expect((await Order.find().sort({ _id: 1 })).map((order) => order._id)).toEqual([1])
      expect(await store.outbox.get('order-1')).not.toBeNull()
      expect(await store.outbox.get('order-2')).toBeNull()
      expect(await store.outbox.get('order-3')).toBeNull()
      await Order.collection.drop()
    },
  )
})
