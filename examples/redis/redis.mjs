// Redis: an order and its event in one MULTI/EXEC, relayed to NATS JetStream, consumed once by a
// billing service whose invoice and inbox mark are queued into one MULTI/EXEC.
// Run: node redis.mjs (TXBOX_REDIS_URL and TXBOX_NATS_URL, else local defaults).
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { InboxProcessor, jsonPayload, OutboxRelay } from '@txbox/core'
import {
  createJetStreamInboxSource,
  createJetStreamPublisher,
  ensureDurableConsumer,
  ensureStream,
} from '@txbox/core/nats'
import { createRedisStore, execTransaction } from '@txbox/redis'
import { Redis } from 'ioredis'
import { connect } from 'nats'

const redis = new Redis(process.env.TXBOX_REDIS_URL ?? 'redis://127.0.0.1:6379')
const nats = await connect({ servers: process.env.TXBOX_NATS_URL ?? 'nats://127.0.0.1:4222' })
const jsm = await nats.jetstreamManager()
await ensureStream(jsm, { name: 'EXAMPLE_REDIS', subjects: ['example-redis.>'] })
await ensureDurableConsumer(jsm, { stream: 'EXAMPLE_REDIS', durable: 'billing' })

// A Redis "transaction" is a MULTI: commands are queued and run together at EXEC (no reads in
// between, and no rollback: execTransaction throws if any queued command failed).
const transaction = async (fn) => {
  const multi = redis.multi()
  let result
  try {
    result = await fn(multi)
  } catch (error) {
    multi.discard()
    throw error
  }
  await execTransaction(multi)
  return result
}

// The event's payload: encode refuses what JSON would drop or change, decode names a bad event.
const OrderCreated = jsonPayload({ name: 'OrderCreated' })

// The shop service. Its own keys carry the store's hash tag {example_shop}, so one MULTI stays
// in one slot and the same code works on Redis Cluster.
const shop = createRedisStore({ redis, keyPrefix: 'example_shop' })
await shop.migrate()
const order = { id: randomUUID(), total: 99.5 }
const eventId = `order-created-${order.id}`
await transaction(async (multi) => {
  multi.hset(`order:{example_shop}:${order.id}`, 'total', String(order.total))
  await shop.outbox.findOrCreate(
    OrderCreated.event({ eventId, subject: 'example-redis.orders.created', payload: order }),
    { tx: multi },
  )
})

const relay = new OutboxRelay({
  outbox: shop.outbox,
  publisher: createJetStreamPublisher({ connection: nats }),
})
relay.start()

// The billing service counts invoices per order: a second run of the handler for one event
// would show up as a count of 2.
const billing = createRedisStore({ redis, keyPrefix: 'example_billing' })
await billing.migrate()
const invoices = 'invoices:{example_billing}'
const processor = new InboxProcessor({
  inbox: billing.inbox,
  source: createJetStreamInboxSource({ connection: nats, stream: 'EXAMPLE_REDIS', durable: 'billing' }),
  transaction, // the invoice and markAsProcessed run in one EXEC
  handler: async ({ event, tx }) => {
    const { id } = OrderCreated.decode(event)
    tx.hincrby(invoices, id, 1)
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
const count = Number(await redis.hget(invoices, order.id))
await redis.quit()
if (count !== 1) throw new Error(`order ${order.id} was invoiced ${count} times`)
console.log(`redis: order ${order.id} invoiced exactly once`)
