import { InboxProcessor, jsonPayload, OutboxRelay } from '@txbox/core'
import * as jetstream from '@txbox/core/nats'
import { createSqliteStore } from '@txbox/sqlite'
import Database from 'better-sqlite3'
import { connect } from 'nats'

// A JetStream stream for the events, and a durable consumer for the billing service.
const nats = await connect({ servers: process.env.TXBOX_NATS_URL ?? 'nats://127.0.0.1:4222' })
await jetstream.ensureStream(await nats.jetstreamManager(), { name: 'ORDERS', subjects: ['orders.>'] })
await jetstream.ensureDurableConsumer(await nats.jetstreamManager(), { stream: 'ORDERS', durable: 'billing' })

// A SQLite transaction is BEGIN ... COMMIT on the connection, which txbox takes as `tx`.
const transaction = async (db, fn) => {
  db.exec('BEGIN IMMEDIATE')
  try {
    const result = await fn(db)
    db.exec('COMMIT')
    return result
  } catch (error) {
    db.exec('ROLLBACK')
    throw error
  }
}

// The event's payload: encode refuses what JSON would drop or change, decode names a bad event.
const OrderCreated = jsonPayload({ name: 'OrderCreated' })

// The orders service: the order and its event commit together, or neither does.
const shopDb = new Database('shop.db')
const shop = createSqliteStore({ db: shopDb })
await shop.migrate()
const order = { id: crypto.randomUUID(), total: 99.5 }
const eventId = `order-created-${order.id}`
await transaction(shopDb, async (tx) => {
  tx.exec('CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total REAL)')
  tx.prepare('INSERT INTO orders (id, total) VALUES (?, ?)').run(order.id, order.total)
  const event = OrderCreated.event({ eventId, subject: 'orders.created', payload: order })
  await shop.outbox.findOrCreate(event, { tx })
})

// The relay publishes committed events to JetStream, with Nats-Msg-Id = eventId.
const relay = new OutboxRelay({
  outbox: shop.outbox,
  publisher: jetstream.createJetStreamPublisher({ connection: nats }),
})
relay.start()

// The billing service: its invoice and the inbox's processed mark commit together, once per event.
const billingDb = new Database('billing.db')
const billing = createSqliteStore({ db: billingDb })
await billing.migrate()
billingDb.exec('CREATE TABLE IF NOT EXISTS invoices (order_id TEXT, total REAL)')
const processor = new InboxProcessor({
  inbox: billing.inbox,
  source: jetstream.createJetStreamInboxSource({ connection: nats, stream: 'ORDERS', durable: 'billing' }),
  transaction: (fn) => transaction(billingDb, fn),
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
