import { InboxProcessor, jsonPayload, OutboxRelay } from '@txbox/core'
import * as jetstream from '@txbox/core/nats'
import { createSqliteStore } from '@txbox/sqlite'
import Database from 'better-sqlite3'
import { connect } from 'nats'

// A JetStream stream for the events, and a durable consumer for the billing service.
const nats = await connect({ servers: process.env.TXBOX_NATS_URL ?? 'nats://127.0.0.1:4222' })
await jetstream.ensureStream(await nats.jetstreamManager(), { name: 'ORDERS', subjects: ['orders.>'] })
await jetstream.ensureDurableConsumer(await nats.jetstreamManager(), { stream: 'ORDERS', durable: 'billing' })

// The event's payload: encode refuses what JSON would drop or change, decode names a bad event.
const OrderCreated = jsonPayload({ name: 'OrderCreated' })

// The orders service: the order and its event commit together, or neither does.
const shopDb = new Database('shop.db')
const shop = createSqliteStore({ db: shopDb })
await shop.migrate()
const order = { id: crypto.randomUUID(), total: 99.5 }
const eventId = `order-created-${order.id}`
shopDb.exec('CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total REAL)')
// store.transaction: BEGIN ... COMMIT (ROLLBACK on a throw); `tx` is the connection, and the
// enqueue inside joins the transaction without being passed `{ tx }`.
await shop.transaction(async (tx) => {
  tx.prepare('INSERT INTO orders (id, total) VALUES (?, ?)').run(order.id, order.total)
  await shop.outbox.findOrCreate(OrderCreated.event({ eventId, subject: 'orders.created', payload: order }))
})

// The relay publishes committed events to JetStream, with Nats-Msg-Id = eventId.
const relay = new OutboxRelay({
  outbox: shop.outbox,
  publisher: jetstream.createJetStreamPublisher({ connection: nats }),
})
relay.start()

// The billing service: its invoice and the inbox's processed mark commit together, once per
// event: built on the store, the processor runs the handler inside billing.transaction.
const billingDb = new Database('billing.db')
const billing = createSqliteStore({ db: billingDb })
await billing.migrate()
billingDb.exec('CREATE TABLE IF NOT EXISTS invoices (order_id TEXT, total REAL)')
const processor = new InboxProcessor({
  store: billing,
  source: jetstream.createJetStreamInboxSource({ connection: nats, stream: 'ORDERS', durable: 'billing' }),
  handler: async ({ event, tx }) => {
    const { id, total } = OrderCreated.decode(event)
    tx.prepare('INSERT INTO invoices (order_id, total) VALUES (?, ?)').run(id, total)
  },
})
await processor.start()

while (!(await billing.inbox.isProcessed(eventId))) await new Promise((resolve) => setTimeout(resolve, 50))
await Promise.all([processor.stop(), relay.stop()])
await nats.close()
const { n } = billingDb.prepare('SELECT count(*) AS n FROM invoices WHERE order_id = ?').get(order.id)
console.log(`order ${order.id}: ${n} invoice`)
