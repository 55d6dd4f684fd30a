import { randomBytes } from 'node:crypto'
import type { EnqueueParams, InboxParams } from '@txbox/core'
import { connectMongoDb } from '@txbox/mongodb'
import type { ClientSession } from 'mongodb'
import { enqueueIn, NotRun } from '../scenarios.js'
import type { Claimer, Counter, Namespace, Target } from '../types.js'
import { setUpOrClose } from './connections.js'
import { uniqueName } from './names.js'

let roundTrips = 0
const counter: Counter = {
  unit: 'round trips',
  reset: () => {
    roundTrips = 0
  },
  value: () => roundTrips,
}

export const mongoDbTarget = async (url: string): Promise<Target> => {
  const probe = connectMongoDb(url, { prefix: `${uniqueName('probe')}_` })
  try {
    await probe.connect()
    const capabilities = await probe.store.detectCapabilities()
    const transactions = capabilities.transactions === 'none' ? 'the server has no transactions' : undefined
    const serverVersion = await probe.serverVersion()
    return {
      name: 'mongodb',
      serverVersion,
      counter,
      scale: 0.02,
      maxRuns: 3,
      relayEvents: 200,
      namespace: () => mongoDbNamespace(url, transactions, /ferretdb/i.test(serverVersion)),
      // Each namespace owns its client and closes it in dispose().
      close: async () => {},
    }
  } finally {
    await probe.close()
  }
}

interface RawDoc {
  _id: string
  [field: string]: unknown
}

/** A fresh collection prefix on a MongoClient of its own: the adapter's store and the raw side share it. */
const mongoDbNamespace = async (
  url: string,
  noTransactions: string | undefined,
  ferretdb: boolean,
): Promise<Namespace> => {
  const prefix = `${uniqueName('b')}_`
  const connection = connectMongoDb(url, { prefix })
  const { store, client } = connection
  // Command monitoring: one commandStarted per command sent (a round trip each). The driver
  // reads the setting when it opens its connections, so it is set before connecting.
  client.options.monitorCommands = true
  client.on('commandStarted', () => {
    roundTrips++
  })
  await setUpOrClose(connection, async () => {
    await connection.connect()
    await store.migrate()
  })
  // The database the store writes into: the URL's, as connectMongoDb picks it.
  const db = client.db()
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
  const inTx = async (write: (session: ClientSession) => Promise<unknown>) => {
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
    endpoint: { store: 'mongodb', url, prefix },
    async rawInsertOne(e) {
      await outbox.insertOne(doc(e, new Date()))
    },
    async rawInsertMany(events) {
      const now = new Date()
      await outbox.insertMany(events.map((e) => doc(e, now)))
    },
    adapterTx: noTransactions ?? ((events) => inTx((session) => enqueueIn(store.outbox, events, session))),
    rawTx:
      noTransactions ??
      ((events) =>
        inTx((session) => {
          const now = new Date()
          const [event] = events
          return events.length === 1 && event
            ? outbox.insertOne(doc(event, now), { session })
            : outbox.insertMany(
                events.map((e) => doc(e, now)),
                { session },
              )
        })),
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
      try {
        for (const name of await db.listCollections({}, { nameOnly: true }).toArray()) {
          if (name.name.startsWith(prefix)) await db.dropCollection(name.name)
        }
      } finally {
        await connection.close()
      }
    },
  }
}
