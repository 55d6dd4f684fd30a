import { GetItemCommand, type TransactWriteItem } from '@aws-sdk/client-dynamodb'
import { DynamoDBDocumentClient, TransactWriteCommand } from '@aws-sdk/lib-dynamodb'
import { ManualClock, StorageError, ValidationError } from '@txbox/core'
import { describe, expect, it } from 'vitest'
import { createDynamoDbStore } from '../src/index.js'
import { documentActions } from '../src/orm/document-client.js'
import { event, skipReason as reason, tablesOnServer, url } from './helpers.js'

describe.skipIf(!url)(`store.transaction on DynamoDB Local${url ? '' : ` (skipped: ${reason})`}`, () => {
  const server = tablesOnServer()
  const setup = async (clock = new ManualClock()) => {
    const tableName = server.tableName()
    const client = server.client()
    const store = createDynamoDbStore({ client, tableName, clock: clock.now })
    await store.migrate()
    /** The business write: an order item in the same table (any table of the account works alike). */
    const putOrder = (id: string, condition = true): TransactWriteItem => ({
      Put: {
        TableName: tableName,
        Item: { pk: { S: `app#order#${id}` }, total: { N: '9.5' } },
        ...(condition ? { ConditionExpression: 'attribute_not_exists(pk)' } : {}),
      },
    })
    const order = async (id: string) =>
      (
        await client.send(
          new GetItemCommand({
            TableName: tableName,
            Key: { pk: { S: `app#order#${id}` } },
            ConsistentRead: true,
          }),
        )
      ).Item
    return { client, tableName, store, putOrder, order }
  }

  it('sends the business action and the enqueue in one TransactWriteItems, or neither', async () => {
    const { store, putOrder, order } = await setup()
    const result = await store.transaction(async (tx, { attempt }) => {
      tx.push(putOrder('1'))
      await store.outbox.findOrCreate(event('order-1'))
      await store.outbox.findOrCreateMany([event('order-1b')])
      // Nothing is written before the commit.
      expect(await store.outbox.get('order-1')).toBeNull()
      expect(tx).toHaveLength(3)
      return attempt
    })
    expect(result).toBe(1)
    expect(await order('1')).toBeDefined()
    expect(await store.outbox.get('order-1')).toMatchObject({ status: 'pending' })
    expect(await store.outbox.get('order-1b')).toMatchObject({ status: 'pending' })

    await expect(
      store.transaction(async (tx) => {
        tx.push(putOrder('2'))
        await store.outbox.findOrCreate(event('order-2'))
        throw new Error('declined')
      }),
    ).rejects.toThrow('declined')
    expect(await order('2')).toBeUndefined()
    expect(await store.outbox.get('order-2')).toBeNull()

    // The business action's own condition fails at commit: the event is not written either.
    const failed = await store
      .transaction(async (tx) => {
        tx.push(putOrder('1'))
        await store.outbox.findOrCreate(event('order-1-again'))
      })
      .catch((error: unknown) => error)
    expect(failed).toBeInstanceOf(StorageError)
    expect(failed).toMatchObject({ operation: 'transaction.commit', reason: 'conflict' })
    expect((failed as Error).message).toMatch(/ConditionalCheckFailed/)
    expect(await store.outbox.get('order-1-again')).toBeNull()
  })

  it('lets an explicit { tx } win and nested calls join the same collector', async () => {
    const { store } = await setup()
    const mine: TransactWriteItem[] = []
    await store.transaction(async (tx) => {
      await store.outbox.findOrCreate(event('explicit'), { tx: mine })
      await store.transaction(async (inner) => {
        expect(inner).toBe(tx)
        await store.outbox.findOrCreate(event('nested'))
      })
      expect(tx).toHaveLength(1)
    })
    expect(mine).toHaveLength(1)
    expect(await store.outbox.get('explicit')).toBeNull()
    expect(await store.outbox.get('nested')).toMatchObject({ status: 'pending' })
  })

  it('retries on a real conflict: the event stored by another writer before the commit cancels it, attempt 2 commits', async () => {
    const { store, putOrder, order } = await setup()
    const other = createDynamoDbStore({ client: server.client(), tableName: store.tableName })
    const attempts: number[] = []
    await store.transaction(
      async (tx, { attempt }) => {
        attempts.push(attempt)
        tx.push(putOrder('race', false))
        await store.outbox.findOrCreate(event('raced'))
        // Another writer stores the same event id between our read and our commit.
        if (attempt === 1) await other.outbox.findOrCreate({ ...event('raced'), payload: '"other"' })
        // On the retry the event is found stored: no Put of it is added, the order still is.
        expect(tx).toHaveLength(attempt === 1 ? 2 : 1)
      },
      { retries: 1 },
    )
    expect(attempts).toEqual([1, 2])
    expect(await order('race')).toBeDefined()
    expect((await store.outbox.get('raced'))?.payload).toBe('"other"')

    const error = await store
      .transaction(async (tx) => {
        tx.push(putOrder('race-2', false))
        await store.outbox.findOrCreate(event('raced-2'))
        await other.outbox.findOrCreate(event('raced-2'))
      })
      .catch((caught: unknown) => caught)
    expect(error).toMatchObject({ name: 'StorageError', reason: 'conflict', operation: 'transaction.commit' })
    expect(await order('race-2')).toBeUndefined()
  })

  it('commits the processed mark with the handler side effect, once under redelivery', async () => {
    const clock = new ManualClock()
    const { store, putOrder, order } = await setup(clock)
    const delivery = { ...event('in-1'), stream: 'ORDERS', streamSeq: 1 }
    let sideEffects = 0
    const deliver = async (crash: boolean) => {
      const { shouldProcess } = await store.inbox.claim(delivery, { workerId: 'w', leaseMs: 1_000 })
      if (!shouldProcess) return
      await store.transaction(async (tx) => {
        tx.push(putOrder('from-inbox', false))
        await store.inbox.markAsProcessed(delivery.eventId)
        if (crash) throw new Error('crashed before commit')
        sideEffects++
      })
    }
    await expect(deliver(true)).rejects.toThrow('crashed before commit')
    expect(await store.inbox.isProcessed('in-1')).toBe(false)
    expect(await order('from-inbox')).toBeUndefined()
    // The crashed worker's lease runs out; the redelivery takes the event again.
    clock.advance(1_001)
    await deliver(false)
    await deliver(false)
    expect(sideEffects).toBe(1)
    expect(await store.inbox.isProcessed('in-1')).toBe(true)
    expect(await order('from-inbox')).toBeDefined()
  })

  it("sends the collector with the Document client's TransactWriteCommand, through documentActions", async () => {
    const { client, tableName, store, order } = await setup()
    const documents = DynamoDBDocumentClient.from(client)
    const send = async (orderId: string, eventId: string) => {
      const collector: TransactWriteItem[] = []
      await store.outbox.findOrCreate({ ...event(eventId), headers: '{"trace":"t1"}' }, { tx: collector })
      await documents.send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Put: {
                TableName: tableName,
                Item: { pk: `app#order#${orderId}`, total: 12.25, lines: [{ sku: 'a', qty: 2 }] },
                ConditionExpression: 'attribute_not_exists(pk)',
              },
            },
            ...documentActions(collector),
          ],
        }),
      )
    }
    await send('doc-1', 'doc-event-1')
    expect((await order('doc-1'))?.total).toEqual({ N: '12.25' })
    const stored = await store.outbox.get('doc-event-1')
    expect(stored).toMatchObject({ status: 'pending', headers: '{"trace":"t1"}', eventId: 'doc-event-1' })
    // Read back through the store: every attribute survived the round trip unchanged.
    expect((await store.outbox.findPending({ limit: 10 })).map((e) => e.eventId)).toEqual(['doc-event-1'])
    // The order exists: its condition cancels the whole transaction, the event included.
    await expect(send('doc-1', 'doc-event-2')).rejects.toMatchObject({ name: 'TransactionCanceledException' })
    expect(await store.outbox.get('doc-event-2')).toBeNull()

    expect(() => documentActions({} as never)).toThrow(ValidationError)
    expect(() => documentActions([{}] as never)).toThrow(/action 0 must have exactly one of Put, Update/)
    expect(() => documentActions([{ Put: { TableName: 't', Item: { pk: {} } } }] as never)).toThrow(
      /action 0 Put\.Item\.pk is not a DynamoDB AttributeValue/,
    )
  })
})
