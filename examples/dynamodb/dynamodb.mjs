// DynamoDB: an order and its event in one TransactWriteItems, relayed to NATS JetStream, consumed
// once by a billing service whose invoice and inbox mark are one TransactWriteItems.
// Run: node dynamodb.mjs (TXBOX_DYNAMODB_URL and TXBOX_NATS_URL, else DynamoDB Local and NATS on
// localhost; against AWS, drop the endpoint and the dummy credentials).
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  CreateTableCommand,
  DynamoDBClient,
  GetItemCommand,
  TransactWriteItemsCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb'
import { InboxProcessor, jsonPayload, OutboxRelay } from '@txbox/core'
import {
  createJetStreamInboxSource,
  createJetStreamPublisher,
  ensureDurableConsumer,
  ensureStream,
} from '@txbox/core/nats'
import { createDynamoDbStore } from '@txbox/dynamodb'
import { connect } from 'nats'

const client = new DynamoDBClient({
  endpoint: process.env.TXBOX_DYNAMODB_URL ?? 'http://127.0.0.1:8000',
  region: 'us-east-1',
  credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
})
const nats = await connect({ servers: process.env.TXBOX_NATS_URL ?? 'nats://127.0.0.1:4222' })
const jsm = await nats.jetstreamManager()
await ensureStream(jsm, { name: 'EXAMPLE_DYNAMODB', subjects: ['example-dynamodb.>'] })
await ensureDurableConsumer(jsm, { stream: 'EXAMPLE_DYNAMODB', durable: 'billing' })

// The business table (orders and invoices), keyed by pk.
const TableName = 'example_business'
await client
  .send(
    new CreateTableCommand({
      TableName,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
    }),
  )
  .catch((error) => {
    if (error.name !== 'ResourceInUseException') throw error // already there
  })
await waitUntilTableExists({ client, maxWaitTime: 60 }, { TableName })

// A DynamoDB transaction is a list of actions sent in one TransactWriteItems: txbox appends
// its own actions to the list you pass as `tx`; nothing is written until the send.
const transaction = async (fn) => {
  const actions = []
  const result = await fn(actions)
  if (actions.length > 0) await client.send(new TransactWriteItemsCommand({ TransactItems: actions }))
  return result
}

// The event's payload: encode refuses what JSON would drop or change, decode names a bad event.
const OrderCreated = jsonPayload({ name: 'OrderCreated' })

// The shop service: the order and its event are written together, or neither is.
const shop = createDynamoDbStore({ client, tableName: 'example_shop_txbox' })
await shop.migrate()
const order = { id: randomUUID(), total: 99.5 }
const eventId = `order-created-${order.id}`
await transaction(async (actions) => {
  actions.push({
    Put: { TableName, Item: { pk: { S: `order#${order.id}` }, total: { N: String(order.total) } } },
  })
  await shop.outbox.findOrCreate(
    OrderCreated.event({ eventId, subject: 'example-dynamodb.orders.created', payload: order }),
    { tx: actions },
  )
})

const relay = new OutboxRelay({
  outbox: shop.outbox,
  publisher: createJetStreamPublisher({ connection: nats }),
})
relay.start()

// The billing service counts invoices per order: a second run of the handler for one event
// would show up as a count of 2.
const billing = createDynamoDbStore({ client, tableName: 'example_billing_txbox' })
await billing.migrate()
const processor = new InboxProcessor({
  inbox: billing.inbox,
  source: createJetStreamInboxSource({ connection: nats, stream: 'EXAMPLE_DYNAMODB', durable: 'billing' }),
  transaction, // the invoice and markAsProcessed are one TransactWriteItems
  handler: async ({ event, tx }) => {
    const { id } = OrderCreated.decode(event)
    tx.push({
      Update: {
        TableName,
        Key: { pk: { S: `invoice#${id}` } },
        UpdateExpression: 'ADD invoices :one',
        ExpressionAttributeValues: { ':one': { N: '1' } },
      },
    })
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
const { Item } = await client.send(
  new GetItemCommand({ TableName, Key: { pk: { S: `invoice#${order.id}` } }, ConsistentRead: true }),
)
client.destroy()
const count = Number(Item?.invoices?.N ?? 0)
if (count !== 1) throw new Error(`order ${order.id} was invoiced ${count} times`)
console.log(`dynamodb: order ${order.id} invoiced exactly once`)
