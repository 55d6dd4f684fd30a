import { randomBytes } from 'node:crypto'
import type { EnqueueParams, InboxParams } from '@txbox/core'
import { createMongoStore } from '@txbox/mongodb'
import { type Db, MongoClient } from 'mongodb'
import { NotRun } from '../scenarios.js'
import type { Claimer, Counter, Namespace, Target } from '../types.js'
import { uniqueName } from './names.js'

let roundTrips = 0
const counter: Counter = {
  unit: 'round trips',
  reset: () => {
    roundTrips = 0
  },
  value: () => roundTrips,
}

export const connectMongo = async (url: string): Promise<Target> => {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 8_000, monitorCommands: true })
  await client.connect()
  // Command monitoring: one commandStarted per command sent (a round trip each).
  client.on('commandStarted', () => {
    roundTrips++
  })
  const db = client.db()
  const probe = createMongoStore({ db, collectionPrefix: `${uniqueName('probe')}_` })
  const capabilities = await probe.detectCapabilities()
  const transactions = capabilities.transactions === 'none' ? 'the server has no transactions' : undefined
  const serverVersion = await probe.serverVersion()
  return {
    name: 'mongodb',
    serverVersion,
    counter,
    scale: 0.02,
    maxRuns: 3,
    relayEvents: 200,
    namespace: () => mongoNamespace(client, db, transactions, /ferretdb/i.test(serverVersion)),
    close: () => client.close(),
  }
}

interface RawDoc {
  _id: string
  [field: string]: unknown
}

const mongoNamespace = async (
  client: MongoClient,
  db: Db,
  noTransactions: string | undefined,
  ferretdb: boolean,
): Promise<Namespace> => {
  const prefix = `${uniqueName('b')}_`
  const store = createMongoStore({ db, collectionPrefix: prefix })
  await store.migrate()
  const outbox = db.collection<RawDoc>(`${prefix}outbox`)
  const inbox = db.collection<{ _id: string; deliveries: number }>(`${prefix}inbox`)
  const orders = db.collection<RawDoc>(`${prefix}orders`)
  let seq = Date.now() * 1000
  const doc = (e: EnqueueParams, now: Date): RawDoc => ({
    _id: e.eventId,
    subject: e.subject,
    payload: e.payload,
    status: 'pending',
    enqueuedAt: now,
    availableAt: now,
    retryCount: 0,
    seq: ++seq,
    rev: randomBytes(8).toString('hex'),
  })
  let orderId = 0
  const inTx = async (write: (session: import('mongodb').ClientSession) => Promise<unknown>) => {
    const session = client.startSession()
    try {
      session.startTransaction()
      const id = ++orderId
      await orders.insertOne({ _id: `${prefix}${id}`, ref: `order-${id}`, total: 100 }, { session })
      await write(session)
      await session.commitTransaction()
    } catch (error) {
      if (session.inTransaction()) await session.abortTransaction()
      throw error
    } finally {
      await session.endSession()
    }
  }
  const claimer: Claimer = {
    outbox: store.outbox,
    // Find the head, take it with a claim token (updateMany guarded by status), read back what
    // this token won, then mark those sent: the token decides ties between claimers.
    async rawClaimAndMark(workerId, limit) {
      for (;;) {
        const now = new Date()
        const head = await outbox
          .find({ status: 'pending', availableAt: { $lte: now } }, { projection: { _id: 1 } })
          .sort({ seq: 1 })
          .limit(limit)
          .toArray()
        if (head.length === 0) return 0
        const ids = head.map((d) => d._id)
        const token = `${workerId}:${randomBytes(4).toString('hex')}`
        await outbox.updateMany(
          { _id: { $in: ids }, status: 'pending' },
          {
            $set: {
              status: 'publishing',
              claimedBy: token,
              claimedAt: now,
              leaseUntil: new Date(now.getTime() + 60_000),
            },
          },
        )
        const won = await outbox.find({ _id: { $in: ids }, claimedBy: token }).toArray()
        if (won.length === 0) continue
        await outbox.updateMany(
          { _id: { $in: won.map((d) => d._id) }, claimedBy: token },
          { $set: { status: 'sent', sentAt: new Date() }, $unset: { claimedBy: '', leaseUntil: '' } },
        )
        return won.length
      }
    },
  }
  return {
    outbox: store.outbox,
    inbox: store.inbox,
    async rawInsertOne(e) {
      await outbox.insertOne(doc(e, new Date()))
    },
    async rawInsertMany(events) {
      const now = new Date()
      await outbox.insertMany(events.map((e) => doc(e, now)))
    },
    adapterTx:
      noTransactions ?? ((event) => inTx((session) => store.outbox.findOrCreate(event, { tx: session }))),
    rawTx:
      noTransactions ?? ((event) => inTx((session) => outbox.insertOne(doc(event, new Date()), { session }))),
    // One MongoClient: its pool gives concurrent claimers separate connections.
    async claimer(k) {
      if (k === 0 || !ferretdb) return claimer
      return {
        outbox: store.outbox,
        async rawClaimAndMark() {
          throw new NotRun(
            'FerretDB v1 reads, modifies and writes back a document in separate steps, so a raw updateMany claim double-claims under concurrent claimers (the adapter guards its writes with a lock collection there); no honest raw baseline for 4 claimers',
          )
        },
      }
    },
    async prefill(events) {
      const now = new Date()
      for (let i = 0; i < events.length; i += 500)
        await outbox.insertMany(events.slice(i, i + 500).map((e) => doc(e, now)))
    },
    async rawInboxClaimAndMark(m: InboxParams, workerId) {
      const now = new Date()
      const result = await inbox.updateOne(
        { _id: m.eventId },
        {
          $setOnInsert: {
            subject: m.subject,
            payload: m.payload,
            stream: m.stream,
            streamSeq: m.streamSeq,
            status: 'processing',
            receivedAt: now,
            claimedAt: now,
            claimedBy: workerId,
            leaseUntil: new Date(now.getTime() + 60_000),
            seq: ++seq,
          },
          $inc: { deliveries: 1 },
        },
        { upsert: true },
      )
      if (result.upsertedCount === 1) {
        await inbox.updateOne(
          { _id: m.eventId },
          {
            $set: { status: 'processed', processedAt: new Date() },
            $unset: { claimedBy: '', leaseUntil: '' },
          },
        )
      }
    },
    async dispose() {
      for (const name of await db.listCollections({}, { nameOnly: true }).toArray()) {
        if (name.name.startsWith(prefix)) await db.dropCollection(name.name)
      }
    },
  }
}
