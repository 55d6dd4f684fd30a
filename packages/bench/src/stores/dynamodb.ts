import {
  type AttributeValue,
  BatchWriteItemCommand,
  ConditionalCheckFailedException,
  DeleteTableCommand,
  type DynamoDBClient,
  PutItemCommand,
  QueryCommand,
  type TransactWriteItem,
  TransactWriteItemsCommand,
  UpdateItemCommand,
  type WriteRequest,
} from '@aws-sdk/client-dynamodb'
import type { EnqueueParams, InboxParams } from '@txbox/core'
import { connectDynamoDb, MAX_TRANSACTION_ACTIONS, tableDefinition } from '@txbox/dynamodb'
import { enqueueIn, NotRun } from '../scenarios.js'
import type { Claimer, Counter, Namespace, Target } from '../types.js'
import { setUpOrClose } from './connections.js'
import { uniqueName } from './names.js'

let requests = 0
const counter: Counter = {
  unit: 'requests',
  reset: () => {
    requests = 0
  },
  value: () => requests,
}

/** One count per request the client sends. */
const countRequests = (client: DynamoDBClient): void => {
  client.middlewareStack.add(
    (next) => async (args) => {
      requests++
      return next(args)
    },
    { step: 'initialize', name: 'txboxBenchCounter' },
  )
}

export const dynamoDbTarget = async (url: string): Promise<Target> => {
  const probe = connectDynamoDb(url)
  try {
    return {
      name: 'dynamodb',
      serverVersion: `${await probe.serverVersion()} at ${new URL(url).host}`,
      counter,
      scale: 0.1,
      maxRuns: 3,
      relayEvents: 1_000,
      namespace: () => dynamoDbNamespace(url),
      // Each namespace owns its client and destroys it in dispose().
      close: async () => {},
    }
  } finally {
    await probe.close()
  }
}

const S = (value: string): AttributeValue => ({ S: value })
const N = (value: number): AttributeValue => ({ N: String(value) })

const isConditionFailure = (error: unknown): boolean =>
  error instanceof ConditionalCheckFailedException ||
  (error instanceof Error && error.name === 'ConditionalCheckFailedException')

/** A fresh table on a client of its own: the adapter's store and the raw side share it. */
const dynamoDbNamespace = async (url: string): Promise<Namespace> => {
  const TableName = uniqueName('b')
  const connection = connectDynamoDb(url, { prefix: TableName })
  const { store, client } = connection
  countRequests(client)
  await setUpOrClose(connection, () => store.migrate())
  const claimIndex = tableDefinition(TableName).GlobalSecondaryIndexes?.[0]?.IndexName as string
  let seq = 0
  // The raw twin's minimal item: the event and its place in the claim index (own partition).
  const item = (e: EnqueueParams, now: number): Record<string, AttributeValue> => {
    const key = String(++seq).padStart(12, '0')
    return {
      pk: S(`raw#${e.eventId}`),
      eventId: S(e.eventId),
      subject: S(e.subject),
      payload: S(e.payload),
      status: S('pending'),
      enqueuedAt: N(now),
      availableAt: N(now),
      retryCount: N(0),
      gsi1pk: S('raw#ready'),
      gsi1sk: S(key),
    }
  }
  const batchWrite = async (events: readonly EnqueueParams[]) => {
    const now = Date.now()
    for (let i = 0; i < events.length; i += 25) {
      let pending: Record<string, WriteRequest[]> | undefined = {
        [TableName]: events.slice(i, i + 25).map((e) => ({ PutRequest: { Item: item(e, now) } })),
      }
      while (pending && Object.keys(pending).length > 0) {
        pending = (await client.send(new BatchWriteItemCommand({ RequestItems: pending }))).UnprocessedItems
      }
    }
  }
  const putRaw = (e: EnqueueParams): TransactWriteItem => ({
    Put: { TableName, Item: item(e, Date.now()), ConditionExpression: 'attribute_not_exists(pk)' },
  })
  const order = (n: number): TransactWriteItem => ({
    Put: {
      TableName,
      Item: { pk: S(`order#${n}`), ref: S(`order-${n}`), total: N(100) },
      ConditionExpression: 'attribute_not_exists(pk)',
    },
  })
  let orderId = 0
  const refuseOverLimit = (events: readonly EnqueueParams[]): void => {
    if (events.length + 1 > MAX_TRANSACTION_ACTIONS)
      throw new NotRun(
        `TransactWriteItems takes at most ${MAX_TRANSACTION_ACTIONS} actions: the business item and ${events.length} events do not fit in one transaction`,
      )
  }
  const claimer: Claimer = {
    outbox: store.outbox,
    // Query the head of the claim partition, then take each item with a conditional
    // UpdateItem (status still pending) in parallel, then mark the won ones sent.
    async rawClaimAndMark(workerId, limit) {
      for (;;) {
        const head = await client.send(
          new QueryCommand({
            TableName,
            IndexName: claimIndex,
            KeyConditionExpression: 'gsi1pk = :p',
            ExpressionAttributeValues: { ':p': S('raw#ready') },
            Limit: limit,
          }),
        )
        const keys = (head.Items ?? []).map((i) => i.pk as AttributeValue)
        if (keys.length === 0) return 0
        const now = Date.now()
        const won = (
          await Promise.all(
            keys.map(async (pk) => {
              try {
                await client.send(
                  new UpdateItemCommand({
                    TableName,
                    Key: { pk },
                    UpdateExpression:
                      'SET #s = :pub, claimedBy = :w, claimedAt = :now, leaseUntil = :l REMOVE gsi1pk, gsi1sk',
                    ConditionExpression: '#s = :pending',
                    ExpressionAttributeNames: { '#s': 'status' },
                    ExpressionAttributeValues: {
                      ':pub': S('publishing'),
                      ':pending': S('pending'),
                      ':w': S(workerId),
                      ':now': N(now),
                      ':l': N(now + 60_000),
                    },
                    ReturnValues: 'ALL_NEW',
                  }),
                )
                return pk
              } catch (error) {
                if (isConditionFailure(error)) return undefined
                throw error
              }
            }),
          )
        ).filter((pk): pk is AttributeValue => pk !== undefined)
        if (won.length === 0) continue
        await Promise.all(
          won.map((pk) =>
            client.send(
              new UpdateItemCommand({
                TableName,
                Key: { pk },
                UpdateExpression: 'SET #s = :sent, sentAt = :now REMOVE claimedBy, leaseUntil',
                ConditionExpression: 'claimedBy = :w',
                ExpressionAttributeNames: { '#s': 'status' },
                ExpressionAttributeValues: { ':sent': S('sent'), ':now': N(Date.now()), ':w': S(workerId) },
              }),
            ),
          ),
        )
        return won.length
      }
    },
  }
  return {
    outbox: store.outbox,
    inbox: store.inbox,
    endpoint: { store: 'dynamodb', url, prefix: TableName },
    async rawInsertOne(e) {
      await client.send(
        new PutItemCommand({
          TableName,
          Item: item(e, Date.now()),
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      )
    },
    rawInsertMany: batchWrite,
    async adapterTx(events) {
      refuseOverLimit(events)
      const items: TransactWriteItem[] = [order(++orderId)]
      await enqueueIn(store.outbox, events, items)
      await client.send(new TransactWriteItemsCommand({ TransactItems: items }))
    },
    async rawTx(events) {
      refuseOverLimit(events)
      await client.send(
        new TransactWriteItemsCommand({ TransactItems: [order(++orderId), ...events.map(putRaw)] }),
      )
    },
    // One client: the SDK's HTTP agent gives concurrent claimers separate sockets.
    claimer: async () => claimer,
    async prefill(events, forRaw) {
      if (forRaw) await batchWrite(events)
      else
        for (let i = 0; i < events.length; i += 100)
          await store.outbox.findOrCreateMany(events.slice(i, i + 100))
    },
    async rawInboxClaimAndMark(m: InboxParams, workerId) {
      const pk = S(`rawinbox#${m.eventId}`)
      const now = Date.now()
      const result = await client.send(
        new UpdateItemCommand({
          TableName,
          Key: { pk },
          UpdateExpression:
            'SET subject = if_not_exists(subject, :s), payload = if_not_exists(payload, :p), #st = if_not_exists(#st, :processing), receivedAt = if_not_exists(receivedAt, :now), claimedBy = if_not_exists(claimedBy, :w), leaseUntil = if_not_exists(leaseUntil, :l) ADD deliveries :one',
          ExpressionAttributeNames: { '#st': 'status' },
          ExpressionAttributeValues: {
            ':s': S(m.subject),
            ':p': S(m.payload),
            ':processing': S('processing'),
            ':now': N(now),
            ':w': S(workerId),
            ':l': N(now + 60_000),
            ':one': N(1),
          },
          ReturnValues: 'UPDATED_OLD',
        }),
      )
      if (result.Attributes?.deliveries === undefined) {
        await client.send(
          new UpdateItemCommand({
            TableName,
            Key: { pk },
            UpdateExpression: 'SET #st = :done, processedAt = :now REMOVE claimedBy, leaseUntil',
            ExpressionAttributeNames: { '#st': 'status' },
            ExpressionAttributeValues: { ':done': S('processed'), ':now': N(Date.now()) },
          }),
        )
      }
    },
    async dispose() {
      try {
        await client.send(new DeleteTableCommand({ TableName }))
      } finally {
        await connection.close()
      }
    },
  }
}
