// SQLite: an order and its event in one transaction, relayed to NATS JetStream, consumed once
// by a billing service (its own database file) whose invoice and inbox mark commit together.
// A second order is rolled back and leaves no event. Run: node sqlite.mjs (TXBOX_NATS_URL,
// else local NATS); the database files go to a fresh temporary directory.
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { InboxProcessor, jsonPayload, OutboxRelay } from '@txbox/core'
import {
  createJetStreamInboxSource,
  createJetStreamPublisher,
  ensureDurableConsumer,
  ensureStream,
} from '@txbox/core/nats'
import { createSqliteStore } from '@txbox/sqlite'
import Database from 'better-sqlite3'
import { connect } from 'nats'

const nats = await connect({ servers: process.env.TXBOX_NATS_URL ?? 'nats://127.0.0.1:4222' })
const jsm = await nats.jetstreamManager()
await ensureStream(jsm, { name: 'EXAMPLE_SQLITE', subjects: ['example-sqlite.>'] })
await ensureDurableConsumer(jsm, { stream: 'EXAMPLE_SQLITE', durable: 'billing' })
const directory = mkdtempSync(join(tmpdir(), 'txbox-example-'))

// The event's payload: encode refuses what JSON would drop or change, decode names a bad event.
const OrderCreated = jsonPayload({ name: 'OrderCreated' })

// The shop service: the order and its event commit together, or neither does.
const shopDb = new Database(join(directory, 'shop.db'))
const shop = createSqliteStore({ db: shopDb })
await shop.migrate()
shopDb.exec('CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, total REAL NOT NULL)')
// store.transaction: BEGIN IMMEDIATE ... COMMIT (ROLLBACK on a throw) on the store's connection,
// which is `tx`; the enqueue inside joins it without { tx }.
const placeOrder = (order, { fail = false } = {}) =>
  shop.transaction(async (tx) => {
    tx.prepare('INSERT INTO orders (id, total) VALUES (?, ?)').run(order.id, order.total)
    await shop.outbox.findOrCreate(
      OrderCreated.event({
        eventId: `order-created-${order.id}`,
        subject: 'example-sqlite.orders.created',
        payload: order,
      }),
    )
    if (fail) throw new Error('payment declined')
  })
const order = { id: randomUUID(), total: 99.5 }
await placeOrder(order)
const declined = { id: randomUUID(), total: 5 }
await placeOrder(declined, { fail: true }).catch(() => {})
if (await shop.outbox.get(`order-created-${declined.id}`))
  throw new Error('a rolled-back order left its event')

const relay = new OutboxRelay({
  outbox: shop.outbox,
  publisher: createJetStreamPublisher({ connection: nats }),
})
relay.start()

// The billing service. invoices has no unique key on purpose: a second run of the handler for
// one event would show up as a second row.
const billingDb = new Database(join(directory, 'billing.db'))
const billing = createSqliteStore({ db: billingDb })
await billing.migrate()
billingDb.exec('CREATE TABLE IF NOT EXISTS invoices (order_id TEXT NOT NULL, total REAL NOT NULL)')
const processor = new InboxProcessor({
  store: billing, // the invoice and markAsProcessed commit together in billing.transaction
  source: createJetStreamInboxSource({ connection: nats, stream: 'EXAMPLE_SQLITE', durable: 'billing' }),
  concurrency: 1, // one connection holds one transaction at a time
  handler: async ({ event, tx }) => {
    const { id, total } = OrderCreated.decode(event)
    tx.prepare('INSERT INTO invoices (order_id, total) VALUES (?, ?)').run(id, total)
  },
})
await processor.start()

const deadline = Date.now() + 30_000
while (!(await billing.inbox.isProcessed(`order-created-${order.id}`))) {
  if (Date.now() > deadline) throw new Error(`order ${order.id} was not processed within 30 s`)
  await sleep(50)
}
await processor.stop() // waits for the handler in flight, so its transaction has committed
await relay.stop()
await nats.close()
const { n } = billingDb.prepare('SELECT count(*) AS n FROM invoices WHERE order_id = ?').get(order.id)
shopDb.close()
billingDb.close()
rmSync(directory, { recursive: true })
if (n !== 1) throw new Error(`order ${order.id} was invoiced ${n} times`)
console.log(`sqlite: order ${order.id} invoiced exactly once; the declined order left no event`)
