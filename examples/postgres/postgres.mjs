// PostgreSQL: an order and its event in one transaction, relayed to NATS JetStream, consumed
// once by a billing service whose invoice and inbox mark commit in one transaction.
// Run: node postgres.mjs (TXBOX_POSTGRES_URL and TXBOX_NATS_URL, else local defaults).
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { InboxProcessor, jsonPayload, OutboxRelay } from '@txbox/core'
import {
  createJetStreamInboxSource,
  createJetStreamPublisher,
  ensureDurableConsumer,
  ensureStream,
} from '@txbox/core/nats'
import { createPostgresStore } from '@txbox/postgres'
import { connect } from 'nats'
import pg from 'pg'

const pool = new pg.Pool({
  connectionString: process.env.TXBOX_POSTGRES_URL ?? 'postgres://txbox:txbox@127.0.0.1:5432/txbox',
})
const nats = await connect({ servers: process.env.TXBOX_NATS_URL ?? 'nats://127.0.0.1:4222' })
const jsm = await nats.jetstreamManager()
await ensureStream(jsm, { name: 'EXAMPLE_PG', subjects: ['example-pg.>'] })
await ensureDurableConsumer(jsm, { stream: 'EXAMPLE_PG', durable: 'billing' })

// The event's payload: encode refuses what JSON would drop or change, decode names a bad event.
const OrderCreated = jsonPayload({ name: 'OrderCreated' })

// The shop service: the order and its event commit together, or neither does.
const shop = createPostgresStore({ pool, schema: 'example_shop' })
await shop.migrate()
await pool.query(
  'CREATE TABLE IF NOT EXISTS example_shop.orders (id uuid PRIMARY KEY, total numeric NOT NULL)',
)
const order = { id: randomUUID(), total: 99.5 }
const eventId = `order-created-${order.id}`
// store.transaction: a pooled client between BEGIN and COMMIT (ROLLBACK on a throw), always
// released; the enqueue inside joins it without { tx }.
await shop.transaction(async (client) => {
  await client.query('INSERT INTO example_shop.orders (id, total) VALUES ($1, $2)', [order.id, order.total])
  await shop.outbox.findOrCreate(
    OrderCreated.event({ eventId, subject: 'example-pg.orders.created', payload: order }),
  )
})

const relay = new OutboxRelay({
  outbox: shop.outbox,
  publisher: createJetStreamPublisher({ connection: nats }),
})
relay.start()

// The billing service. invoices has no unique key on purpose: a second run of the handler
// for one event would show up as a second row.
const billing = createPostgresStore({ pool, schema: 'example_billing' })
await billing.migrate()
await pool.query(
  'CREATE TABLE IF NOT EXISTS example_billing.invoices (order_id uuid NOT NULL, total numeric NOT NULL)',
)
const processor = new InboxProcessor({
  store: billing, // the handler's insert and markAsProcessed commit together in billing.transaction
  source: createJetStreamInboxSource({ connection: nats, stream: 'EXAMPLE_PG', durable: 'billing' }),
  handler: async ({ event, tx }) => {
    const { id, total } = OrderCreated.decode(event)
    await tx.query('INSERT INTO example_billing.invoices (order_id, total) VALUES ($1, $2)', [id, total])
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
const { rows } = await pool.query(
  'SELECT count(*)::int AS n FROM example_billing.invoices WHERE order_id = $1',
  [order.id],
)
await pool.end()
if (rows[0].n !== 1) throw new Error(`order ${order.id} was invoiced ${rows[0].n} times`)
console.log(`postgres: order ${order.id} invoiced exactly once`)
