// MySQL 8 / MariaDB 10.6+: an order and its event in one transaction, relayed to NATS JetStream,
// consumed once by a billing service whose invoice and inbox mark commit in one transaction.
// Run: node mysql.mjs (TXBOX_MYSQL_URL and TXBOX_NATS_URL, else local defaults).
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { InboxProcessor, jsonPayload, OutboxRelay } from '@txbox/core'
import {
  createJetStreamInboxSource,
  createJetStreamPublisher,
  ensureDurableConsumer,
  ensureStream,
} from '@txbox/core/nats'
import { createMySqlStore } from '@txbox/mysql'
import { createPool } from 'mysql2/promise'
import { connect } from 'nats'

const pool = createPool({
  uri: process.env.TXBOX_MYSQL_URL ?? 'mysql://txbox:txbox@127.0.0.1:3306/txbox',
  charset: 'utf8mb4_bin',
})
const nats = await connect({ servers: process.env.TXBOX_NATS_URL ?? 'nats://127.0.0.1:4222' })
const jsm = await nats.jetstreamManager()
await ensureStream(jsm, { name: 'EXAMPLE_MYSQL', subjects: ['example-mysql.>'] })
await ensureDurableConsumer(jsm, { stream: 'EXAMPLE_MYSQL', durable: 'billing' })

// The event's payload: encode refuses what JSON would drop or change, decode names a bad event.
const OrderCreated = jsonPayload({ name: 'OrderCreated' })

// The shop service: the order and its event commit together, or neither does.
const shop = createMySqlStore({ pool, tablePrefix: 'example_shop_' })
await shop.migrate()
await pool.query(
  'CREATE TABLE IF NOT EXISTS example_orders (id CHAR(36) PRIMARY KEY, total DECIMAL(10, 2) NOT NULL)',
)
const order = { id: randomUUID(), total: 99.5 }
const eventId = `order-created-${order.id}`
// store.transaction: a pooled connection between BEGIN and COMMIT (ROLLBACK on a throw), always
// released; the enqueue inside joins it without { tx }.
await shop.transaction(async (connection) => {
  await connection.execute('INSERT INTO example_orders (id, total) VALUES (?, ?)', [order.id, order.total])
  await shop.outbox.findOrCreate(
    OrderCreated.event({ eventId, subject: 'example-mysql.orders.created', payload: order }),
  )
})

const relay = new OutboxRelay({
  outbox: shop.outbox,
  publisher: createJetStreamPublisher({ connection: nats }),
})
relay.start()

// The billing service. example_invoices has no unique key on purpose: a second run of the
// handler for one event would show up as a second row.
const billing = createMySqlStore({ pool, tablePrefix: 'example_billing_' })
await billing.migrate()
await pool.query(
  'CREATE TABLE IF NOT EXISTS example_invoices (order_id CHAR(36) NOT NULL, total DECIMAL(10, 2) NOT NULL)',
)
const processor = new InboxProcessor({
  store: billing, // the handler's insert and markAsProcessed commit together in billing.transaction
  source: createJetStreamInboxSource({ connection: nats, stream: 'EXAMPLE_MYSQL', durable: 'billing' }),
  handler: async ({ event, tx }) => {
    const { id, total } = OrderCreated.decode(event)
    await tx.execute('INSERT INTO example_invoices (order_id, total) VALUES (?, ?)', [id, total])
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
const [rows] = await pool.query('SELECT count(*) AS n FROM example_invoices WHERE order_id = ?', [order.id])
await pool.end()
if (Number(rows[0].n) !== 1) throw new Error(`order ${order.id} was invoiced ${rows[0].n} times`)
console.log(`mysql: order ${order.id} invoiced exactly once`)
