// MongoDB: an order and its event in one transaction, relayed to NATS JetStream, consumed once by a
// billing service whose invoice and inbox mark commit in one transaction.
// Transactions need a replica set (one node is enough) or a sharded cluster. On a server without
// them (standalone mongod, FerretDB v1) the example says so and runs without: the event is then
// written after the order, not atomically with it, and the handler's effect is at-least-once.
// Run: node mongodb.mjs (TXBOX_MONGODB_URL and TXBOX_NATS_URL, else local defaults).
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { InboxProcessor, jsonPayload, OutboxRelay } from '@txbox/core'
import {
  createJetStreamInboxSource,
  createJetStreamPublisher,
  ensureDurableConsumer,
  ensureStream,
} from '@txbox/core/nats'
import { createMongoDbStore } from '@txbox/mongodb'
import { MongoClient } from 'mongodb'
import { connect } from 'nats'

const client = await new MongoClient(
  process.env.TXBOX_MONGODB_URL ?? 'mongodb://127.0.0.1:27017/txbox',
).connect()
const db = client.db()
const nats = await connect({ servers: process.env.TXBOX_NATS_URL ?? 'nats://127.0.0.1:4222' })
const jsm = await nats.jetstreamManager()
await ensureStream(jsm, { name: 'EXAMPLE_MONGODB', subjects: ['example-mongodb.>'] })
await ensureDurableConsumer(jsm, { stream: 'EXAMPLE_MONGODB', durable: 'billing' })

// The event's payload: encode refuses what JSON would drop or change, decode names a bad event.
const OrderCreated = jsonPayload({ name: 'OrderCreated' })

const shop = createMongoDbStore({ db, collectionPrefix: 'example_shop_' })
await shop.migrate() // also probes the server: shop.capabilities says whether it has transactions
const { transactions, transactionsNote } = shop.capabilities
if (transactions === 'none')
  console.warn(
    `mongodb: no transactions (${transactionsNote}); the order and its event are written one after the other`,
  )

// withTransaction commits fn's writes together (and retries fn on a transient error);
// txbox writes take the session as `tx`.
const transaction = (fn) => client.withSession((session) => session.withTransaction(() => fn(session)))
const withoutTransaction = (fn) => fn(undefined)
const atomically = transactions === 'none' ? withoutTransaction : transaction

// The shop service: on a replica set the order and its event commit together, or neither does.
const order = { _id: randomUUID(), total: 99.5 }
const eventId = `order-created-${order._id}`
await atomically(async (session) => {
  await db.collection('example_orders').insertOne(order, { session })
  await shop.outbox.findOrCreate(
    OrderCreated.event({ eventId, subject: 'example-mongodb.orders.created', payload: order }),
    { tx: session },
  )
})

const relay = new OutboxRelay({
  outbox: shop.outbox,
  publisher: createJetStreamPublisher({ connection: nats }),
})
relay.start()

// The billing service counts invoices per order: a second run of the handler for one event would
// show up as a count of 2. With a transaction runner the count and markAsProcessed commit
// together. Without one the handler runs, then the mark is written: a crash in between runs the
// handler again, so there make its writes idempotent (e.g. an upsert keyed by event.eventId).
const billing = createMongoDbStore({ db, collectionPrefix: 'example_billing_' })
await billing.migrate()
const invoices = db.collection('example_invoices')
const processor = new InboxProcessor({
  inbox: billing.inbox,
  source: createJetStreamInboxSource({ connection: nats, stream: 'EXAMPLE_MONGODB', durable: 'billing' }),
  ...(transactions === 'none' ? {} : { transaction }),
  handler: async ({ event, tx }) => {
    const { _id } = OrderCreated.decode(event)
    await invoices.updateOne({ _id }, { $inc: { count: 1 } }, { upsert: true, session: tx })
  },
})
await processor.start()

const deadline = Date.now() + 30_000
while (!(await billing.inbox.isProcessed(eventId))) {
  if (Date.now() > deadline) throw new Error(`${eventId} was not processed within 30 s`)
  await sleep(50)
}
await processor.stop()
await relay.stop()
await nats.close()
const count = (await invoices.findOne({ _id: order._id }))?.count ?? 0
await client.close()
if (count !== 1) throw new Error(`order ${order._id} was invoiced ${count} times`)
console.log(
  `mongodb: order ${order._id} invoiced exactly once (${transactions === 'none' ? 'without' : 'with'} transactions)`,
)
