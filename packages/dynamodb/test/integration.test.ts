import {
  CreateTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  GetItemCommand,
  PutItemCommand,
  type TransactWriteItem,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb'
import { ManualClock } from '@txbox/core'
import { describe, expect, it } from 'vitest'
import {
  createDynamoDbStore,
  type DynamoDbStoreOptions,
  MAX_ITEM_BYTES,
  SCHEMA_VERSION,
  tableDefinition,
} from '../src/index.js'
import { event, skipReason as reason, tablesOnServer, url } from './helpers.js'

describe.skipIf(!url)(`DynamoDB Local${url ? '' : ` (skipped: ${reason})`}`, () => {
  const server = tablesOnServer()
  const { clients } = server
  const client = () => server.client()
  const freshStore = async (options: Partial<DynamoDbStoreOptions> = {}) => {
    const tableName = server.tableName()
    const clock = new ManualClock()
    const store = createDynamoDbStore({ client: client(), tableName, clock: clock.now, ...options })
    await store.migrate()
    return { store, clock, tableName }
  }

  it('migrate() from two processes at once both succeed, and again later', async () => {
    const tableName = server.tableName()
    const a = createDynamoDbStore({ client: client(), tableName, ttlDays: 7 })
    const b = createDynamoDbStore({ client: client(), tableName, ttlDays: 7 })
    await Promise.all([a.migrate(), b.migrate()])
    await a.migrate()
    const { Table } = await clients[0]!.send(new DescribeTableCommand({ TableName: tableName }))
    expect(Table?.TableStatus).toBe('ACTIVE')
    expect(Table?.GlobalSecondaryIndexes?.map((index) => index.IndexName).sort()).toEqual(['gsi1', 'gsi2'])
    const ttl = await clients[0]!.send(new DescribeTimeToLiveCommand({ TableName: tableName }))
    expect(ttl.TimeToLiveDescription?.AttributeName).toBe('expiresAt')
  })

  it('migrate() refuses a table that exists without the txbox indexes', async () => {
    const tableName = server.tableName()
    const admin = client()
    await admin.send(
      new CreateTableCommand({
        TableName: tableName,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      }),
    )
    await expect(createDynamoDbStore({ client: admin, tableName }).migrate()).rejects.toMatchObject({
      name: 'StorageError',
      message: expect.stringMatching(/without the index\(es\) gsi1, gsi2/),
    })
  })

  it('sets expiresAt on sent and processed events when ttlDays is given, and removes it if they move on', async () => {
    const { store, clock, tableName } = await freshStore({ ttlDays: 2 })
    await store.outbox.findOrCreate(event('ttl'))
    await store.outbox.markAsSent('ttl')
    const raw = async (pk: string) =>
      (
        await clients[0]!.send(
          new GetItemCommand({ TableName: tableName, Key: { pk: { S: pk } }, ConsistentRead: true }),
        )
      ).Item
    const expected = Math.ceil((clock.peekMs() + 2 * 86_400_000) / 1000)
    expect((await raw('ob#e#ttl'))?.expiresAt?.N).toBe(String(expected))
    await store.outbox.markAsFailed('ttl', 'no, it was not sent')
    expect((await raw('ob#e#ttl'))?.expiresAt).toBeUndefined()
    await store.inbox.findOrCreate(event('in'))
    await store.inbox.markAsProcessed('in')
    expect((await raw('ib#e#in'))?.expiresAt?.N).toBe(String(expected))
  })

  it('a retry due at once goes back into ready at its enqueue position; a delayed one into timed', async () => {
    const { store, tableName } = await freshStore({ shards: 1 })
    await store.outbox.findOrCreateMany([event('now'), event('later')])
    await store.outbox.claim({ limit: 2, leaseMs: 1_000, workerId: 'w' })
    await store.outbox.retryLater('now', { errorMessage: 'x', delayMs: 0, workerId: 'w' })
    await store.outbox.retryLater('later', { errorMessage: 'x', delayMs: 1_000, workerId: 'w' })
    const raw = async (pk: string) =>
      (
        await clients[0]!.send(
          new GetItemCommand({ TableName: tableName, Key: { pk: { S: pk } }, ConsistentRead: true }),
        )
      ).Item
    const now = await raw('ob#e#now')
    expect(now?.gsi1pk?.S).toBe('ob#ready#0')
    expect(now?.gsi1sk?.S).toBe(now?.seqKey?.S)
    expect((await raw('ob#e#later'))?.gsi1pk?.S).toBe('ob#timed#0')
  })

  it('stores an event just under the item limit and round-trips NUL, astral characters and empty strings', async () => {
    const { store } = await freshStore()
    const payload = `\u0000${'x'.repeat(MAX_ITEM_BYTES - 3_000)}😀\u0001"\\`
    const stored = await store.outbox.findOrCreate({ ...event('near-limit', payload), headers: '' })
    expect(stored.payload).toBe(payload)
    const read = await store.outbox.get('near-limit')
    expect(read?.payload).toBe(payload)
    expect(read?.headers).toBe('')
    // Creation refuses control characters in ids (NATS headers cannot carry them), so NUL is in the headers only.
    const empty = await store.inbox.findOrCreate({ ...event('nul-headers', ''), headers: '\u0000' })
    expect((await store.inbox.get('nul-headers'))?.payload).toBe('')
    expect(empty.headers).toBe('\u0000')
  })

  it('a collector Put for an id created meanwhile cancels the caller transaction with ConditionalCheckFailed at that action', async () => {
    const { store, tableName } = await freshStore()
    const tx: TransactWriteItem[] = [
      { Put: { TableName: tableName, Item: { pk: { S: 'app#order-1' }, total: { N: '42' } } } },
    ]
    await store.outbox.findOrCreate(event('raced'), { tx })
    // Another writer stores the same id before the caller commits.
    await store.outbox.findOrCreate(event('raced', 'the other one'))
    const error = await clients
      .at(-1)!
      .send(new TransactWriteItemsCommand({ TransactItems: tx }))
      .catch((caught: unknown) => caught)
    expect(error).toMatchObject({ name: 'TransactionCanceledException' })
    const codes = (error as { CancellationReasons?: { Code?: string }[] }).CancellationReasons?.map(
      (r) => r.Code,
    )
    expect(codes).toEqual(['None', 'ConditionalCheckFailed'])
    expect((await store.outbox.get('raced'))?.payload).toBe('the other one')
    // An id already stored when the caller enqueues adds no action: the stored event is returned.
    const again: TransactWriteItem[] = []
    expect((await store.outbox.findOrCreate(event('raced', 'third'), { tx: again })).payload).toBe(
      'the other one',
    )
    expect(again).toEqual([])
  })

  /** A client of its own that counts the commands it sends, by name. */
  const countingClient = () => {
    const counted = client()
    const sent: string[] = []
    counted.middlewareStack.add(
      (next, context) => async (args) => {
        sent.push(context.commandName ?? '?')
        return next(args)
      },
      { step: 'initialize', name: 'countCommands' },
    )
    return { counted, sent }
  }

  it('findOrCreateMany writes new events 100 per TransactWriteItems; stored ids come back as stored and the rest is written', async () => {
    const { counted, sent } = countingClient()
    const { store } = await freshStore({ client: counted })
    sent.splice(0) // migrate()'s own requests
    const ids = Array.from({ length: 250 }, (_, index) => `batch-${index}`)
    const created = await store.outbox.findOrCreateMany(ids.map((id) => event(id)))
    expect(created.map((e) => e.eventId)).toEqual(ids)
    expect(sent.splice(0)).toEqual(Array(3).fill('TransactWriteItemsCommand'))

    // Stored ids spread over two chunks, with other payloads this time: first write wins.
    const again = [
      ...['batch-3', 'new-1', 'batch-120', 'new-2'].map((id) => event(id, 'second')),
      ...Array.from({ length: 100 }, (_, index) => event(`more-${index}`, 'second')),
    ]
    const results = await store.outbox.findOrCreateMany(again)
    expect(results.map((e) => [e.eventId, e.payload]).slice(0, 4)).toEqual([
      ['batch-3', '{"id":"batch-3"}'],
      ['new-1', 'second'],
      ['batch-120', '{"id":"batch-120"}'],
      ['new-2', 'second'],
    ])
    expect(results[0]).toEqual(created[3])
    expect(results[2]).toEqual(created[120])
    // Chunk one (100) is cancelled by its two stored ids, then its 98 others are written; chunk two (4) goes through.
    expect(sent.splice(0)).toEqual(Array(3).fill('TransactWriteItemsCommand'))
    for (const result of results) expect(await store.outbox.get(result.eventId)).toEqual(result)
    expect((await store.outbox.getCountByStatus()).pending).toBe(352)
  })

  it("findOrCreateMany with batchEnqueue: 'puts' sends one conditional PutItem per event and returns stored ids as stored", async () => {
    const { counted, sent } = countingClient()
    const { store } = await freshStore({ client: counted, batchEnqueue: 'puts' })
    await store.outbox.findOrCreate(event('stored'))
    sent.splice(0)
    const results = await store.outbox.findOrCreateMany([event('a'), event('stored', 'second'), event('b')])
    expect(results.map((e) => e.payload)).toEqual(['{"id":"a"}', '{"id":"stored"}', '{"id":"b"}'])
    expect(sent.filter((name) => name === 'PutItemCommand')).toHaveLength(3)
    expect(sent).not.toContain('TransactWriteItemsCommand')
  })

  it('findOrCreateMany cuts a batch of large events into transactions under the 4 MB request limit', async () => {
    const { counted, sent } = countingClient()
    const { store } = await freshStore({ client: counted })
    sent.splice(0) // migrate()'s own requests
    // 15 events of ~300 KB: 4.5 MB, over what one TransactWriteItems may carry.
    const big = Array.from({ length: 15 }, (_, index) =>
      event(`big-${index}`, `${index}`.padEnd(300_000, 'x')),
    )
    const results = await store.outbox.findOrCreateMany(big)
    expect(results.map((e) => e.payload.length)).toEqual(Array(15).fill(300_000))
    expect(sent.filter((name) => name === 'TransactWriteItemsCommand')).toHaveLength(2)
    expect((await store.outbox.get('big-14'))?.payload).toBe(big[14]?.payload)
  })

  it('concurrent findOrCreateMany calls with overlapping ids store one event per id and all answer it', async () => {
    const { store, tableName } = await freshStore()
    // Other stores on the same table: separate clients, each its own transactions.
    const others = Array.from({ length: 3 }, () => createDynamoDbStore({ client: client(), tableName }))
    const ids = Array.from({ length: 60 }, (_, index) => `shared-${index}`)
    const answers = await Promise.all(
      [store, ...others].map((writer, w) =>
        writer.outbox.findOrCreateMany(
          // Each writer its own payload, and its own order of the ids.
          (w % 2 === 0 ? ids : [...ids].reverse()).map((id) => event(id, `writer-${w}`)),
        ),
      ),
    )
    for (const id of ids) {
      const stored = await store.outbox.get(id)
      for (const answer of answers) expect(answer.find((e) => e.eventId === id)).toEqual(stored)
    }
    expect((await store.outbox.getCountByStatus()).pending).toBe(60)
  })

  it('keeps FIFO across shards with a frozen clock, whatever the shard count', async () => {
    for (const shards of [1, 7]) {
      const { store } = await freshStore({ shards })
      const ids = Array.from({ length: 30 }, (_, index) => `s${shards}-${(index * 37) % 101}`)
      for (const id of ids.slice(0, 10)) await store.outbox.findOrCreate(event(id))
      await store.outbox.findOrCreateMany(ids.slice(10).map((id) => event(id)))
      expect((await store.outbox.findPending({ limit: 100 })).map((e) => e.eventId)).toEqual(ids)
      expect(
        (await store.outbox.claim({ limit: 12, leaseMs: 1_000, workerId: 'w' })).map((e) => e.eventId),
      ).toEqual(ids.slice(0, 12))
      expect(await store.outbox.getCountByStatus()).toEqual({
        pending: 18,
        publishing: 12,
        sent: 0,
        failed: 0,
      })
    }
  })

  it('delayed, retried and lease-expired events come back in enqueue order', async () => {
    const { store, clock } = await freshStore()
    const t0 = clock.peekMs()
    await store.outbox.findOrCreate({ ...event('a'), availableAt: new Date(t0 + 5_000) })
    await store.outbox.findOrCreate(event('b'))
    await store.outbox.findOrCreate(event('c'))
    expect(
      (await store.outbox.claim({ limit: 1, leaseMs: 2_000, workerId: 'w' })).map((e) => e.eventId),
    ).toEqual(['b'])
    await store.outbox.findOrCreate(event('d'))
    clock.advance(5_000)
    // a (delayed, now due), b (lease expired), c and d (ready): enqueue order.
    expect((await store.outbox.findPending()).map((e) => e.eventId)).toEqual(['a', 'c', 'd'])
    expect(
      (await store.outbox.claim({ limit: 2, leaseMs: 1_000, workerId: 'w2' })).map((e) => e.eventId),
    ).toEqual(['a', 'b'])
  })

  it('concurrent inbox claims: one id at ten stream positions is one event, ten ids at one position are ten', async () => {
    const { store, tableName } = await freshStore()
    const sameId = await Promise.all(
      Array.from({ length: 10 }, (_, index) =>
        store.inbox.claim(
          { ...event('redelivered'), stream: 'ORDERS', streamSeq: 100 + index },
          { leaseMs: 60_000, workerId: `w${index}` },
        ),
      ),
    )
    expect(sameId.filter((result) => result.shouldProcess)).toHaveLength(1)
    expect(new Set(sameId.map((result) => result.event.eventId))).toEqual(new Set(['redelivered']))
    expect((await store.inbox.get('redelivered'))?.deliveries).toBe(10)
    // A re-created stream restarts at sequence 1: the same position under new ids is new events.
    const samePosition = await Promise.all(
      Array.from({ length: 10 }, (_, index) =>
        store.inbox.claim(
          { ...event(`recreated-${index}`), stream: 'ORDERS', streamSeq: 7 },
          { leaseMs: 60_000, workerId: `w${index}` },
        ),
      ),
    )
    expect(samePosition.every((result) => result.shouldProcess)).toBe(true)
    expect(samePosition.map((result) => result.event.eventId)).toEqual(
      Array.from({ length: 10 }, (_, index) => `recreated-${index}`),
    )
    const alias = await clients[0]!.send(
      new GetItemCommand({ TableName: tableName, Key: { pk: { S: 'ib#s#ORDERS#7' } }, ConsistentRead: true }),
    )
    expect(alias.Item).toBeUndefined()
  })

  it('migrate() on a table the previous release left at version 2 applies nothing and keeps it working', async () => {
    const tableName = server.tableName()
    const admin = client()
    // What the previous release's migrate() left: the table, and `{ version: 2 }` alone.
    await admin.send(new CreateTableCommand(tableDefinition(tableName)))
    await admin.send(
      new PutItemCommand({ TableName: tableName, Item: { pk: { S: 'txbox#schema' }, version: { N: '2' } } }),
    )
    // An item migration 0002 would delete: it survives only if 0002 is not applied again.
    await admin.send(
      new PutItemCommand({ TableName: tableName, Item: { pk: { S: 'ib#s#KEPT#1' }, eventId: { S: 'k' } } }),
    )
    const clock = new ManualClock()
    const store = createDynamoDbStore({ client: admin, tableName, clock: clock.now })
    await store.outbox.findOrCreate(event('before'))

    await store.migrate()
    await store.migrate()
    const raw = async (pk: string) =>
      (
        await admin.send(
          new GetItemCommand({ TableName: tableName, Key: { pk: { S: pk } }, ConsistentRead: true }),
        )
      ).Item
    expect(await raw('txbox#schema')).toEqual({ pk: { S: 'txbox#schema' }, version: { N: '2' } })
    expect(await raw('ib#s#KEPT#1')).toBeDefined()
    await store.outbox.findOrCreate(event('after'))
    expect(
      (await store.outbox.claim({ limit: 5, leaseMs: 1_000, workerId: 'w' })).map((e) => e.eventId),
    ).toEqual(['before', 'after'])
  })

  it('migrate() on a new table records each applied version with its time', async () => {
    const { tableName, clock } = await freshStore()
    const schema = await clients[0]!.send(
      new GetItemCommand({ TableName: tableName, Key: { pk: { S: 'txbox#schema' } }, ConsistentRead: true }),
    )
    expect(schema.Item).toEqual({
      pk: { S: 'txbox#schema' },
      version: { N: String(SCHEMA_VERSION) },
      appliedAt: { N: String(clock.peekMs()) },
    })
  })

  it('migrate() from version 1 deletes the (stream, streamSeq) alias items; a new id at a stored position is processed', async () => {
    const { store, tableName } = await freshStore()
    const admin = clients[0]!
    const lease = { leaseMs: 60_000, workerId: 'w' }
    const old = { ...event('old-7'), stream: 'ORDERS', streamSeq: 7 }
    expect((await store.inbox.claim(old, lease)).shouldProcess).toBe(true)
    await store.inbox.markAsProcessed('old-7')
    // What version 1 left: an alias item per stream position, and the version record.
    const aliases = Array.from({ length: 60 }, (_, index) => `ib#s#ORDERS#${index + 1}`)
    for (const pk of aliases) {
      await admin.send(
        new PutItemCommand({ TableName: tableName, Item: { pk: { S: pk }, eventId: { S: 'old-7' } } }),
      )
    }
    await admin.send(
      new PutItemCommand({ TableName: tableName, Item: { pk: { S: 'txbox#schema' }, version: { N: '1' } } }),
    )

    await store.migrate()
    const schema = await admin.send(
      new GetItemCommand({ TableName: tableName, Key: { pk: { S: 'txbox#schema' } }, ConsistentRead: true }),
    )
    expect(schema.Item?.version?.N).toBe(String(SCHEMA_VERSION))
    for (const pk of aliases) {
      const left = await admin.send(
        new GetItemCommand({ TableName: tableName, Key: { pk: { S: pk } }, ConsistentRead: true }),
      )
      expect(left.Item, pk).toBeUndefined()
    }
    const claimed = await store.inbox.claim({ ...old, eventId: 'new-7' }, lease)
    expect(claimed.shouldProcess).toBe(true)
    expect(claimed.event).toMatchObject({ eventId: 'new-7', stream: 'ORDERS', streamSeq: 7, deliveries: 1 })
    expect((await store.inbox.get('old-7'))?.status).toBe('processed')
  })
})
