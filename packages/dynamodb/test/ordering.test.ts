import {
  GetItemCommand,
  ScanCommand,
  type TransactWriteItem,
  TransactWriteItemsCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb'
import { ManualClock, type OutboxEvent } from '@txbox/core'
import { describe, expect, it } from 'vitest'
import { lostKeyCounter } from '../src/errors.js'
import { classifyDynamoDbError, createDynamoDbStore, type DynamoDbStoreOptions } from '../src/index.js'
import { PARK_RECHECK_MS } from '../src/key-chain.js'
import { chainedOrderKey, chainOf, orderKey } from '../src/keys.js'
import { event, skipReason as reason, tablesOnServer, url } from './helpers.js'

const keyed = (eventId: string, orderingKey: string, payload?: string) => ({
  ...event(eventId, payload),
  orderingKey,
})
const lease = (workerId: string) => ({ limit: 10, leaseMs: 3_600_000, workerId })

describe('the chain link carried in seqKey', () => {
  it('round-trips any key and id, and leaves the enqueue order to the order key', () => {
    const link = { orderingKey: 'Ordér "42" \\ #😀', keySeq: 2 ** 53 - 1, prevEventId: 'a#b"c' }
    const early = chainedOrderKey(orderKey(1_000, 7), link)
    expect(chainOf(early)).toEqual(link)
    expect(chainOf(chainedOrderKey(orderKey(1_000, 8), { ...link, prevEventId: undefined }))).toEqual({
      ...link,
      prevEventId: undefined,
    })
    // An unkeyed event's seqKey is the bare order key.
    expect(chainOf(orderKey(1_000, 7))).toBeUndefined()
    // A later order key sorts after, whatever the links say.
    expect(early < chainedOrderKey(orderKey(1_000, 8), { ...link, orderingKey: '!' })).toBe(true)
    expect(early < orderKey(1_001, 0)).toBe(true)
  })
})

describe.skipIf(!url)(`ordering keys on DynamoDB Local${url ? '' : ` (skipped: ${reason})`}`, () => {
  const server = tablesOnServer()
  const freshStore = async (options: Partial<DynamoDbStoreOptions> = {}) => {
    const tableName = server.tableName()
    const clock = new ManualClock()
    const store = createDynamoDbStore({ client: server.client(), tableName, clock: clock.now, ...options })
    await store.migrate()
    /** The same table through another client (its own connections), as another process. */
    const peer = () =>
      createDynamoDbStore({ client: server.client(), tableName, clock: clock.now, ...options })
    const raw = async (pk: string) =>
      (
        await server.clients[0]!.send(
          new GetItemCommand({ TableName: tableName, Key: { pk: { S: pk } }, ConsistentRead: true }),
        )
      ).Item
    const keyedItems = async (orderingKey: string) =>
      (
        await server.clients[0]!.send(
          new ScanCommand({
            TableName: tableName,
            FilterExpression: 'orderingKey = :k',
            ExpressionAttributeValues: { ':k': { S: orderingKey } },
            ConsistentRead: true,
          }),
        )
      ).Items ?? []
    /** Asserts the key's chain: keySeq 1..n without a hole, each event's predecessor the one before it, the counter at n. */
    const expectChain = async (orderingKey: string, count: number) => {
      const items = (await keyedItems(orderingKey)).sort((a, b) => Number(a.keySeq?.N) - Number(b.keySeq?.N))
      expect(items.map((item) => Number(item.keySeq?.N))).toEqual(
        Array.from({ length: count }, (_, i) => i + 1),
      )
      items.forEach((item, index) => {
        expect(item.prevEventId?.S).toBe(index === 0 ? undefined : items[index - 1]?.eventId?.S)
      })
      const counter = await raw(`ob#k#${orderingKey}`)
      expect(counter?.lastSeq?.N).toBe(String(count))
      expect(counter?.lastEventId?.S).toBe(items[count - 1]?.eventId?.S)
      return items
    }
    return { store, clock, tableName, peer, raw, expectChain }
  }

  it('concurrent enqueues of one key from two clients get keySeq 1..n, each chained to the one before', async () => {
    const { store, peer, expectChain } = await freshStore()
    const other = peer()
    const answered = await Promise.all(
      Array.from({ length: 16 }, (_, index) =>
        index % 4 === 3
          ? (index % 2 === 0 ? store : other).outbox.findOrCreateMany([
              keyed(`batch-${index}-a`, 'hot'),
              keyed(`batch-${index}-b`, 'hot'),
            ])
          : (index % 2 === 0 ? store : other).outbox
              .findOrCreate(keyed(`one-${index}`, 'hot'))
              .then((e) => [e]),
      ),
    )
    const events = answered.flat()
    expect(events).toHaveLength(20)
    const items = await expectChain('hot', 20)
    // What each enqueue answered is what is stored; a batch's events are consecutive, in input order.
    const stored = new Map(items.map((item) => [item.eventId?.S, Number(item.keySeq?.N)]))
    for (const answer of events) expect(answer.keySeq).toBe(stored.get(answer.eventId))
    for (const batch of answered.filter((answer) => answer.length === 2))
      expect((batch[1] as OutboxEvent).keySeq).toBe(((batch[0] as OutboxEvent).keySeq ?? 0) + 1)
  })

  it('an instance whose remembered counter went stale (another client enqueued the key) chains after the stored one', async () => {
    const { store, peer, expectChain } = await freshStore()
    const other = peer()
    expect((await store.outbox.findOrCreate(keyed('a', 'k'))).keySeq).toBe(1)
    expect(
      (await other.outbox.findOrCreateMany([keyed('b', 'k'), keyed('c', 'k')])).map((e) => e.keySeq),
    ).toEqual([2, 3])
    expect(
      (await store.outbox.findOrCreateMany([keyed('d', 'k'), keyed('e', 'other')])).map((e) => e.keySeq),
    ).toEqual([4, 1])
    await expectChain('k', 4)
  })

  it('keys an instance does not remember are taken for new ones until that guess keeps failing, then read first', async () => {
    const { store, tableName, clock, expectChain } = await freshStore()
    const keys = Array.from({ length: 8 }, (_, index) => `k${index}`)
    await store.outbox.findOrCreateMany(keys.map((key) => keyed(`${key}-1`, key)))
    const client = server.client()
    const sent: string[] = []
    client.middlewareStack.add(
      (next, context) => async (args) => {
        sent.push(context.commandName ?? '?')
        return next(args)
      },
      { step: 'initialize', name: 'countCommands' },
    )
    const other = createDynamoDbStore({ client, tableName, clock: clock.now })
    const commandsOf = async (key: string) => {
      sent.length = 0
      const [event] = await other.outbox.findOrCreateMany([keyed(`${key}-2`, key)])
      expect(event?.keySeq).toBe(2)
      return sent.join(',')
    }
    // A guess that the key is new: cancelled by the stored counter, chained again after it.
    expect(await commandsOf('k0')).toBe('TransactWriteItemsCommand,TransactWriteItemsCommand')
    expect(await commandsOf('k1')).toBe('TransactWriteItemsCommand,TransactWriteItemsCommand')
    expect(await commandsOf('k2')).toBe('TransactWriteItemsCommand,TransactWriteItemsCommand')
    // Three wrong guesses in a row: the counters of unknown keys are read first.
    expect(await commandsOf('k3')).toBe('BatchGetItemCommand,TransactWriteItemsCommand')
    for (const key of keys) await expectChain(key, key <= 'k3' ? 2 : 1)
  })

  it('a large batch: one key across several transactions keeps input order, many keys commit in parallel chunks', async () => {
    const { store, expectChain } = await freshStore()
    const params = [
      ...Array.from({ length: 120 }, (_, index) => keyed(`long-${index}`, 'long')),
      ...Array.from({ length: 130 }, (_, index) => keyed(`wide-${index}`, `wide-${index}`)),
    ]
    // Interleaved, so that the long key's events fall into every chunk.
    const mixed = params.map(
      (_, index) => params[index % 2 === 0 ? index / 2 : 125 + (index - 1) / 2] as (typeof params)[number],
    )
    const answered = await store.outbox.findOrCreateMany(mixed)
    expect(answered).toHaveLength(250)
    const long = answered.filter((e) => e.orderingKey === 'long')
    expect(long.map((e) => e.eventId)).toEqual(Array.from({ length: 120 }, (_, index) => `long-${index}`))
    expect(long.map((e) => e.keySeq)).toEqual(Array.from({ length: 120 }, (_, index) => index + 1))
    await expectChain('long', 120)
    for (const e of answered.filter((e) => e.orderingKey !== 'long')) expect(e.keySeq).toBe(1)
  })

  it('a stored id in a keyed batch is answered as stored and takes no keySeq: the chain has no hole', async () => {
    const { store, expectChain } = await freshStore()
    const first = await store.outbox.findOrCreate(keyed('a', 'k', 'first'))
    const batch = await store.outbox.findOrCreateMany([
      keyed('b', 'k'),
      keyed('a', 'k', 'second write, ignored'),
      keyed('c', 'k'),
    ])
    expect(batch.map((e) => [e.eventId, e.keySeq])).toEqual([
      ['b', 2],
      ['a', 1],
      ['c', 3],
    ])
    expect(batch[1]).toEqual(first)
    await expectChain('k', 3)
  })

  it('the counter survives cleanup: a key whose events were all deleted goes on from its last keySeq', async () => {
    const { store, clock, raw } = await freshStore()
    await store.outbox.findOrCreateMany([keyed('a', 'k'), keyed('b', 'k')])
    for (const expected of ['a', 'b']) {
      const claimed = await store.outbox.claim(lease('w'))
      expect(claimed.map((e) => e.eventId)).toEqual([expected])
      await store.outbox.markManyAsSent([expected], { workerId: 'w' })
    }
    clock.advance(2 * 86_400_000)
    expect(await store.outbox.cleanup(1)).toBe(2)
    const next = await store.outbox.findOrCreate(keyed('c', 'k'))
    expect(next.keySeq).toBe(3)
    // Its predecessor is gone (deleted as sent): it is the head.
    expect((await store.outbox.claim(lease('w'))).map((e) => e.eventId)).toEqual(['c'])
    expect((await raw('ob#k#k'))?.lastSeq?.N).toBe('3')
  })

  it('a claim parks the event behind a head in flight; marking the head sent puts it back at its enqueue position', async () => {
    const { store, raw } = await freshStore({ shards: 1 })
    await store.outbox.findOrCreate(keyed('a', 'k'))
    await store.outbox.findOrCreate(keyed('b', 'k'))
    await store.outbox.findOrCreate(event('plain'))
    // b is not the head: the claim takes a and the unkeyed event, and parks b.
    expect((await store.outbox.claim(lease('w'))).map((e) => e.eventId)).toEqual(['a', 'plain'])
    const parked = await raw('ob#e#b')
    expect(parked?.gsi1pk?.S).toBe('ob#timed#0')
    expect(parked?.unparkPk?.S).toBe('ob#ready#0')
    expect((await raw('ob#e#a'))?.nextEventId?.S).toBe('b')
    // Parked is still pending and due: findPending lists it.
    expect((await store.outbox.findPending()).map((e) => e.eventId)).toEqual(['b'])
    expect(await store.outbox.claim(lease('w2'))).toEqual([])
    await store.outbox.markManyAsSent(['a'], { workerId: 'w' })
    const back = await raw('ob#e#b')
    expect(back?.gsi1pk?.S).toBe('ob#ready#0')
    expect(back?.gsi1sk?.S).toBe(back?.seqKey?.S)
    expect(back?.unparkPk).toBeUndefined()
    expect((await store.outbox.claim(lease('w2'))).map((e) => [e.eventId, e.orderingKey, e.keySeq])).toEqual([
      ['b', 'k', 2],
    ])
  })

  it("an enqueue parks its event behind the key's last event while that one holds the key, else files it for claims", async () => {
    const { store, raw } = await freshStore({ shards: 1 })
    await store.outbox.findOrCreate(keyed('a', 'k'))
    await store.outbox.findOrCreate(keyed('b', 'k'))
    // a is pending: b is parked at once, named in a's nextEventId, and a claim reads only a.
    const parked = await raw('ob#e#b')
    expect(parked?.gsi1pk?.S).toBe('ob#timed#0')
    expect(parked?.unparkPk?.S).toBe('ob#ready#0')
    expect((await raw('ob#e#a'))?.nextEventId?.S).toBe('b')
    expect((await store.outbox.findPending()).map((e) => e.eventId)).toEqual(['a', 'b'])
    expect((await store.outbox.claim(lease('w'))).map((e) => e.eventId)).toEqual(['a'])
    expect(await store.outbox.markManyAsSent(['a'], { workerId: 'w' })).toEqual([])
    expect((await raw('ob#e#b'))?.gsi1pk?.S).toBe('ob#ready#0')
    expect((await store.outbox.claim(lease('w'))).map((e) => [e.eventId, e.keySeq])).toEqual([['b', 2]])
    expect(await store.outbox.markManyAsSent(['b'], { workerId: 'w' })).toEqual([])
    // b is sent: c (enqueued after) is not parked behind it but filed in the claim index.
    await store.outbox.findOrCreate(keyed('c', 'k'))
    expect((await raw('ob#e#c'))?.gsi1pk?.S).toBe('ob#ready#0')
    expect((await raw('ob#e#b'))?.nextEventId).toBeUndefined()
    expect((await store.outbox.claim(lease('w'))).map((e) => [e.eventId, e.keySeq])).toEqual([['c', 3]])
    // The key's last event enqueued again (pending, so parking is on): answered as stored.
    await store.outbox.findOrCreate(keyed('d', 'k'))
    const again = await store.outbox.findOrCreateMany([keyed('d', 'k', 'other'), keyed('e', 'k')])
    expect(again.map((e) => [e.eventId, e.keySeq, e.payload])).toEqual([
      ['d', 4, event('d').payload],
      ['e', 5, event('e').payload],
    ])
  })

  it('an event parked behind a head whose wake-up was lost is claimed after the recheck interval', async () => {
    const { store, clock, tableName } = await freshStore()
    await store.outbox.findOrCreateMany([keyed('a', 'k'), keyed('b', 'k')])
    expect((await store.outbox.claim(lease('w'))).map((e) => e.eventId)).toEqual(['a'])
    // a becomes sent by a write that does not wake b (a relay that died between the two writes).
    await server.clients[0]!.send(
      new UpdateItemCommand({
        TableName: tableName,
        Key: { pk: { S: 'ob#e#a' } },
        UpdateExpression: 'SET #s = :sent',
        ExpressionAttributeNames: { '#s': 'status' },
        ExpressionAttributeValues: { ':sent': { S: 'sent' } },
      }),
    )
    expect(await store.outbox.claim(lease('w'))).toEqual([])
    clock.advance(PARK_RECHECK_MS)
    expect((await store.outbox.claim(lease('w'))).map((e) => e.eventId)).toEqual(['b'])
  })

  it('claimers on two clients racing over one key never hold two of its events, and take them in keySeq order', async () => {
    const { store, peer } = await freshStore()
    const other = peer()
    const ids = Array.from({ length: 8 }, (_, index) => `e${index}`)
    await store.outbox.findOrCreateMany(ids.map((id) => keyed(id, 'k')))
    const order: string[] = []
    for (let round = 0; round < ids.length * 3 && order.length < ids.length; round++) {
      const claims = await Promise.all(
        [store, other, store, other].map((s, index) => s.outbox.claim(lease(`w${index}`))),
      )
      const taken = claims.flatMap((claimed, index) => claimed.map((e) => ({ e, workerId: `w${index}` })))
      expect(taken.length).toBeLessThanOrEqual(1)
      for (const { e, workerId } of taken) {
        order.push(e.eventId)
        expect(await store.outbox.markManyAsSent([e.eventId], { workerId })).toEqual([])
      }
    }
    expect(order).toEqual(ids)
  })

  it("'skip': a redriven dead letter goes to the end of its key and never runs beside an event that went past it", async () => {
    const { store, clock, raw } = await freshStore()
    const skip = (workerId: string) => ({ ...lease(workerId), keyedDeadLetters: 'skip' as const })
    const ids = async (claimed: Promise<OutboxEvent[]>) => (await claimed).map((e) => e.eventId)
    await store.outbox.findOrCreateMany([keyed('f1', 'F'), keyed('f2', 'F'), keyed('f3', 'F')])
    expect(await ids(store.outbox.claim(skip('w')))).toEqual(['f1'])
    await store.outbox.markAsFailed('f1', 'dead letter', { workerId: 'w' })
    expect(await ids(store.outbox.claim(skip('w')))).toEqual(['f2'])
    // f2 is in flight when f1 is redriven: f1 must not be claimed beside it, by either policy.
    expect(await store.outbox.requeueFailed(['f1'])).toBe(1)
    expect(await ids(store.outbox.claim(skip('w2')))).toEqual([])
    expect(await ids(store.outbox.claim(lease('w2')))).toEqual([])
    // f2 sent: f3 (which followed f1) goes first, then the redriven f1; one at a time.
    expect(await store.outbox.markManyAsSent(['f2'], { workerId: 'w' })).toEqual([])
    expect(await ids(store.outbox.claim(skip('w')))).toEqual(['f3'])
    expect(await ids(store.outbox.claim(skip('w2')))).toEqual([])
    // An event enqueued after the redrive waits for the redriven f1.
    await store.outbox.findOrCreate(keyed('f4', 'F'))
    expect(await store.outbox.markManyAsSent(['f3'], { workerId: 'w' })).toEqual([])
    const f1 = await store.outbox.claim(skip('w'))
    expect(f1.map((e) => [e.eventId, e.keySeq])).toEqual([['f1', 1]])
    expect(await ids(store.outbox.claim(skip('w2')))).toEqual([])
    expect(await store.outbox.markManyAsSent(['f1'], { workerId: 'w' })).toEqual([])
    expect((await store.outbox.claim(skip('w'))).map((e) => [e.eventId, e.keySeq])).toEqual([['f4', 5]])
    // The redrive took keySeq 4 for the redriven event's new place: the counter never goes back.
    expect((await raw('ob#k#F'))?.lastSeq?.N).toBe('5')
    expect(await store.outbox.markManyAsSent(['f4'], { workerId: 'w' })).toEqual([])
    clock.advance(PARK_RECHECK_MS)
    expect(await store.outbox.claim(skip('w'))).toEqual([])
  })

  it("'skip': a dead letter redriven before anything went past it is the head again, as under 'block'", async () => {
    const { store } = await freshStore()
    const skip = (workerId: string) => ({ ...lease(workerId), keyedDeadLetters: 'skip' as const })
    const ids = async (claimed: Promise<OutboxEvent[]>) => (await claimed).map((e) => e.eventId)
    await store.outbox.findOrCreateMany([keyed('g1', 'G'), keyed('g2', 'G')])
    expect(await ids(store.outbox.claim(skip('w')))).toEqual(['g1'])
    await store.outbox.markAsFailed('g1', 'dead letter', { workerId: 'w' })
    expect(await store.outbox.requeueFailed(['g1'])).toBe(1)
    expect(await ids(store.outbox.claim(skip('w')))).toEqual(['g1'])
    expect(await ids(store.outbox.claim(skip('w2')))).toEqual([])
    expect(await store.outbox.markManyAsSent(['g1'], { workerId: 'w' })).toEqual([])
    expect(await ids(store.outbox.claim(skip('w')))).toEqual(['g2'])
  })

  it('enqueues of one key into one collector continue one chain with a single counter write; keySeq is given at commit', async () => {
    const { store, raw, expectChain } = await freshStore()
    await store.outbox.findOrCreate(keyed('before', 'k'))
    const tx: TransactWriteItem[] = []
    const a = await store.outbox.findOrCreate(keyed('a', 'k'), { tx })
    const [b, c] = await store.outbox.findOrCreateMany([keyed('b', 'k'), keyed('c', 'k')], { tx })
    // Provisional answers: the keySeq is decided when the collector commits.
    expect([a.orderingKey, a.keySeq, b?.keySeq, c?.keySeq]).toEqual(['k', undefined, undefined, undefined])
    expect(tx).toHaveLength(4) // one counter update, three puts
    await server.clients[0]!.send(new TransactWriteItemsCommand({ TransactItems: tx }))
    await expectChain('k', 4)
    expect((await store.outbox.get('c'))?.keySeq).toBe(4)
    expect((await raw('ob#e#a'))?.nextEventId?.S).toBe('b')
    expect((await raw('ob#e#b'))?.unparkPk).toBeDefined()
  })

  it('store.transaction chains its keyed events after an enqueue of the key that committed while it was open', async () => {
    const { store, peer, raw, expectChain } = await freshStore()
    const other = peer()
    let runs = 0
    await store.transaction(async (tx) => {
      runs++
      await store.outbox.findOrCreateMany([keyed('in-tx-1', 'k'), keyed('in-tx-2', 'k')], { tx })
      tx.push({
        Put: { TableName: store.tableName, Item: { pk: { S: 'app#order#42' }, state: { S: 'paid' } } },
      })
      await other.outbox.findOrCreate(keyed('outside', 'k'))
    })
    // Sent again with the key re-chained, not run again; the caller's own action went with it.
    expect(runs).toBe(1)
    expect((await store.outbox.get('outside'))?.keySeq).toBe(1)
    expect((await store.outbox.get('in-tx-1'))?.keySeq).toBe(2)
    expect((await store.outbox.get('in-tx-2'))?.keySeq).toBe(3)
    expect((await raw('app#order#42'))?.state?.S).toBe('paid')
    await expectChain('k', 3)
  })

  it('a collector sent by the caller after its key counter moved is cancelled: a retryable conflict', async () => {
    const { store, peer } = await freshStore()
    const other = peer()
    const tx: TransactWriteItem[] = []
    await store.outbox.findOrCreate(keyed('in-tx', 'k'), { tx })
    await other.outbox.findOrCreate(keyed('outside', 'k'))
    const sent = server.clients[0]!.send(new TransactWriteItemsCommand({ TransactItems: tx }))
    const error = await sent.then(
      () => undefined,
      (failure: unknown) => failure,
    )
    expect(lostKeyCounter(error)).toBe(true)
    expect(classifyDynamoDbError(error)).toMatchObject({ reason: 'conflict', retryable: true })
    expect(await store.outbox.get('in-tx')).toBeNull()
  })
})
