import { ManualClock, PayloadTooLargeError, StorageError, ValidationError } from '@txbox/core'
import { type Db, MongoClient } from 'mongodb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMongoDbStore, type MongoDbStore, SCHEMA_VERSION } from '../src/index.js'
import { collectionNames } from '../src/mongodb-options.js'
import type { OutboxDocument } from '../src/rows.js'
import { migrationFiles, schemaThrough, TestServer, url, version4Documents } from './support.js'

const server = new TestServer()
const freshPrefix = (): string => server.freshPrefix()

describe.skipIf(!url)('mongodb adapter against a real server (TXBOX_MONGODB_URL)', () => {
  let db: Db
  let ferretdb = false

  beforeAll(async () => {
    db = await server.connect()
    const build = await db.command({ buildInfo: 1 })
    ferretdb = typeof build.ferretdbVersion === 'string'
  })

  afterAll(() => server.close())

  const store = async (
    clock = new ManualClock(),
  ): Promise<{ store: MongoDbStore; prefix: string; clock: ManualClock }> => {
    const prefix = freshPrefix()
    const created = createMongoDbStore({ db, collectionPrefix: prefix, clock: clock.now })
    await created.migrate()
    return { store: created, prefix, clock }
  }

  it('migrate() runs twice, and twice at once, and records the schema version', async () => {
    const { store: migrated, prefix } = await store()
    await migrated.outbox.findOrCreate({ eventId: 'kept', subject: 's', payload: 'p' })
    await migrated.migrate()
    await Promise.all([migrated.migrate(), createMongoDbStore({ db, collectionPrefix: prefix }).migrate()])
    const names = collectionNames(prefix)
    expect(await db.collection(names.meta).findOne({ _id: 'schema' as never })).toMatchObject({
      version: SCHEMA_VERSION,
    })
    const indexes = await db.collection(names.outbox).listIndexes().toArray()
    expect(indexes.map((index) => index.name)).toEqual(
      expect.arrayContaining(['txbox_status_seq', 'txbox_status_sent_at']),
    )
    expect((await migrated.outbox.get('kept'))?.status).toBe('pending')
  })

  it('upgrades a version 1 database: the alias collection is dropped, a new id at a stored (stream, streamSeq) is a new event', async () => {
    const { store: upgraded, prefix } = await store()
    const names = collectionNames(prefix)
    const lease = { leaseMs: 30_000, workerId: 'w' }
    const old = { eventId: 'old-7', subject: 'orders.created', payload: '{}', stream: 'ORDERS', streamSeq: 7 }
    expect((await upgraded.inbox.claim(old, lease)).shouldProcess).toBe(true)
    await upgraded.inbox.markAsProcessed('old-7')
    // What version 1 left: its alias of ORDERS/7 and the version record.
    const inboxStreams = `${prefix}inbox_streams`
    await db.collection<{ _id: string; eventId: string; at: Date }>(inboxStreams).insertOne({
      _id: '7:ORDERS',
      eventId: 'old-7',
      at: new Date(),
    })
    await db.collection(names.meta).updateOne({ _id: 'schema' as never }, { $set: { version: 1 } })

    await upgraded.migrate()
    expect(await db.listCollections({ name: inboxStreams }).toArray()).toEqual([])
    expect(await db.collection(names.meta).findOne({ _id: 'schema' as never })).toMatchObject({
      version: SCHEMA_VERSION,
    })
    const claimed = await upgraded.inbox.claim({ ...old, eventId: 'new-7' }, lease)
    expect(claimed.shouldProcess).toBe(true)
    expect(claimed.event).toMatchObject({ eventId: 'new-7', stream: 'ORDERS', streamSeq: 7, deliveries: 1 })
    expect((await upgraded.inbox.get('old-7'))?.status).toBe('processed')
    await upgraded.migrate()
  })

  it('takes a database as an older release left it (history at version 2): only the ordering-keys steps are applied', async () => {
    const prefix = freshPrefix()
    const names = collectionNames(prefix)
    // What the previous release's migrate() left: the collections, their indexes and
    // { _id: 'schema', version: 2, migratedAt } in <prefix>meta.
    await schemaThrough(db, prefix, 2)
    // A step applied again would recreate this index.
    await db.collection(names.outbox).dropIndex('txbox_status_sent_at')
    const old = createMongoDbStore({ db, collectionPrefix: prefix })
    await old.outbox.findOrCreate({ eventId: 'before', subject: 's', payload: 'p' })

    await old.migrate()
    const indexes = (await db.collection(names.outbox).listIndexes().toArray()).map((index) => index.name)
    expect(indexes).not.toContain('txbox_status_sent_at')
    expect(indexes).toEqual(expect.arrayContaining(['txbox_status_seq', 'txbox_ordering_key_key_seq']))
    expect(await db.collection(names.meta).find({}).toArray()).toEqual([
      { _id: 'schema', version: SCHEMA_VERSION, migratedAt: expect.any(Date) },
    ])
    expect(await db.listCollections({ name: names.outboxKeys }).toArray()).toHaveLength(1)
    // The event stored before the upgrade has no key and is claimed as before.
    expect(await old.outbox.get('before')).not.toHaveProperty('orderingKey')
    const [claimed] = await old.outbox.claim({ limit: 1, leaseMs: 1_000, workerId: 'w' })
    expect(claimed?.eventId).toBe('before')
    await old.outbox.markAsSent('before', { workerId: 'w' })
    expect((await old.outbox.get('before'))?.status).toBe('sent')
  })

  it('takes a database as the previous release left it (history at version 3, keys numbered): numbering goes on from the counters', async () => {
    const prefix = freshPrefix()
    const names = collectionNames(prefix)
    const store = createMongoDbStore({ db, collectionPrefix: prefix })
    // Version 3's collections and indexes, then what its numbering left: numbered events,
    // a counter, and a numbering lock of a process that stopped.
    await schemaThrough(db, prefix, 3)
    await db.collection(names.outboxKeys).insertOne({ _id: 'K' as never, lastSeq: 2 })
    await db.collection(names.locks).insertOne({ _id: 'key|K' as never, at: new Date(), token: 't' })

    await store.migrate()
    expect(await db.listCollections({ name: names.outboxKeyDecisions }).toArray()).toHaveLength(1)
    expect(await db.collection(names.meta).findOne({ _id: 'schema' as never })).toMatchObject({
      version: SCHEMA_VERSION,
    })
    // The old lock does not stop numbering; the counter goes on where version 3 left it.
    expect(
      await store.outbox.findOrCreate({ eventId: 'k3', subject: 's', payload: 'p', orderingKey: 'K' }),
    ).toMatchObject({
      keySeq: 3,
    })
    await store.migrate()
    expect(await db.collection(names.meta).countDocuments({})).toBe(1)
  })

  it('takes a database as version 4 left it (keyed events in every status, no holding field): after migrate the claim takes only the heads a key may give', async () => {
    const prefix = freshPrefix()
    const names = collectionNames(prefix)
    const clock = new ManualClock()
    const store = createMongoDbStore({ db, collectionPrefix: prefix, clock: clock.now })
    await schemaThrough(db, prefix, 4)
    // What version 4 stored: the same documents, without `holding`.
    const now = clock.now()
    const later = new Date(now.getTime() + 60_000)
    const event = version4Documents(now)
    await db.collection<OutboxDocument>(names.outbox).insertMany([
      // A: its head is in flight (a live lease), so a3 waits.
      event('a1', 'A', 1, 'sent', { sentAt: now }),
      event('a2', 'A', 2, 'publishing', { claimedBy: 'old', claimedAt: now, leaseUntil: later }),
      event('a3', 'A', 3, 'pending'),
      // B: a dead letter blocks its key ('block').
      event('b1', 'B', 1, 'failed', { errorMessage: 'x', retryCount: 3 }),
      event('b2', 'B', 2, 'pending'),
      // C: its head waits for a retry, so c2 waits.
      event('c1', 'C', 1, 'pending', { availableAt: later, retryCount: 1 }),
      event('c2', 'C', 2, 'pending'),
      // D: its first event was sent: d2 is the head.
      event('d1', 'D', 1, 'sent', { sentAt: now }),
      event('d2', 'D', 2, 'pending'),
      event('u1', undefined, undefined, 'pending'),
    ])
    await db.collection(names.outboxKeys).insertMany(
      ['A', 'B', 'C', 'D'].map((key) => ({
        _id: key as never,
        lastSeq: key === 'A' ? 3 : 2,
      })),
    )

    await store.migrate()
    expect(await db.collection(names.meta).findOne({ _id: 'schema' as never })).toMatchObject({ version: 5 })
    const outbox = db.collection<OutboxDocument>(names.outbox)
    const holding = await outbox.find({ holding: true }, { projection: { _id: 1 } }).toArray()
    expect(holding.map((doc) => doc._id).sort()).toEqual(['a2', 'a3', 'b1', 'b2', 'c1', 'c2', 'd2'])
    expect(await outbox.indexExists('txbox_ordering_key_holding')).toBe(true)
    const claimed = await store.outbox.claim({ limit: 10, leaseMs: 60_000, workerId: 'w' })
    expect(claimed.map((e) => e.eventId)).toEqual(['d2', 'u1'])
    // Sent: it no longer holds its key, and the key's next event is its head.
    expect(await store.outbox.markManyAsSent(['d2', 'u1'], { workerId: 'w' })).toEqual([])
    expect(await outbox.findOne({ _id: 'd2' })).not.toHaveProperty('holding')
    await store.outbox.findOrCreate({ eventId: 'd3', subject: 's', payload: 'p', orderingKey: 'D' })
    expect(await outbox.findOne({ _id: 'd3' })).toMatchObject({ holding: true, keySeq: 3 })
    clock.advance(60_000)
    // The lease of a2 and the retry of c1 are over: each key gives back its head, never a later event.
    expect(
      (await store.outbox.claim({ limit: 10, leaseMs: 60_000, workerId: 'w' })).map((e) => e.eventId).sort(),
    ).toEqual(['a2', 'c1', 'd3'])
    await store.migrate()
    expect(await db.collection(names.meta).countDocuments({})).toBe(1)
  })

  it('round-trips U+0000 and U+0001 in every text field that may hold them, stored escaped', async () => {
    const { store: codec, prefix } = await store()
    const text = 'a\u0000b\u0001c\u0000'
    // Not in the id: an event id travels as a NATS header, and creation refuses control characters.
    const eventId = 'id-codec'
    const workerId = `w\u0000`
    await codec.outbox.findOrCreate({ eventId, subject: 'sub\u0000ject', payload: text, headers: text })
    const [claimed] = await codec.outbox.claim({ limit: 1, leaseMs: 1_000, workerId })
    expect(claimed).toMatchObject({
      eventId,
      subject: 'sub\u0000ject',
      payload: text,
      headers: text,
      claimedBy: workerId,
    })
    await codec.outbox.markAsFailed(eventId, text, { workerId })
    expect(await codec.outbox.get(eventId)).toMatchObject({
      payload: text,
      errorMessage: text,
      status: 'failed',
    })
    const raw = await db.collection(collectionNames(prefix).outbox).findOne({})
    expect(JSON.stringify(raw).includes('\\u0000')).toBe(false)
    const inbox = await codec.inbox.claim(
      { eventId, subject: 's', payload: text, stream: 'S\u0000', streamSeq: 1 },
      { leaseMs: 1_000, workerId },
    )
    expect(inbox.event).toMatchObject({ eventId, payload: text, stream: 'S\u0000', claimedBy: workerId })
    // The id alone is the identity: a stored stream position never merges another id into it.
    expect(
      (
        await codec.inbox.findOrCreate({
          eventId: 'other',
          subject: 's',
          payload: '',
          stream: 'S\u0000',
          streamSeq: 1,
        })
      ).eventId,
    ).toBe('other')
  })

  it('reports its transactions and rejects { tx } where the server has none', async () => {
    const { store: plain } = await store()
    const capabilities = await plain.detectCapabilities()
    expect(plain.capabilities).toEqual(capabilities)
    if (capabilities.transactions !== 'none') return
    expect(capabilities.transactionsNote).toMatch(ferretdb ? /FerretDB/ : /standalone/)
    const session = db.client.startSession()
    try {
      const event = { eventId: 'tx', subject: 's', payload: 'p' }
      await expect(plain.outbox.findOrCreate(event, { tx: session })).rejects.toBeInstanceOf(ValidationError)
      await expect(plain.outbox.findOrCreateMany([event], { tx: session })).rejects.toThrow(
        /not supported by this server/,
      )
      await plain.inbox.findOrCreate(event)
      await expect(plain.inbox.markAsProcessed('tx', { tx: session })).rejects.toBeInstanceOf(ValidationError)
      expect(await plain.outbox.get('tx')).toBeNull()
      expect((await plain.inbox.get('tx'))?.status).toBe('processing')
    } finally {
      await session.endSession()
    }
  })

  it('frees an event whose lock holder died (lock older than the TTL)', async () => {
    if (!ferretdb) return // MongoDB's updates are atomic: no lock collection is used
    const { store: guarded, prefix } = await store()
    await guarded.outbox.findOrCreate({ eventId: 'stuck', subject: 's', payload: 'p' })
    const names = collectionNames(prefix)
    const doc = await db.collection<OutboxDocument>(names.outbox).findOne({ _id: 'stuck' })
    await db.collection<{ _id: string; at: Date }>(names.locks).insertOne({
      _id: `${doc?.rev}|outbox|stuck`,
      at: new Date(Date.now() - 60_000),
    })
    await guarded.outbox.markAsSent('stuck')
    expect((await guarded.outbox.get('stuck'))?.status).toBe('sent')
    expect(await db.collection(names.locks).countDocuments({})).toBe(0)
  })

  it('an uncontended claim and markManyAsSent read nothing back after their updates; a new inbox message is one insert', async () => {
    const watched = new MongoClient(url ?? '', { monitorCommands: true })
    await watched.connect()
    try {
      const prefix = freshPrefix()
      const watchedStore = createMongoDbStore({ db: watched.db(), collectionPrefix: prefix })
      await watchedStore.migrate()
      const ids = ['a', 'b', 'c']
      await watchedStore.outbox.findOrCreateMany(
        ids.map((eventId) => ({ eventId, subject: 's', payload: 'p' })),
      )
      // The first guarded write detects the server (hello, buildInfo): out of the count.
      await watchedStore.outbox.markAsPublishing('a')
      await watchedStore.outbox.retryLater('a', { errorMessage: 'warm-up', delayMs: 0 })
      const sent: string[] = []
      watched.on('commandStarted', (event) => sent.push(event.commandName))
      const claimed = await watchedStore.outbox.claim({ limit: 3, leaseMs: 60_000, workerId: 'w' })
      expect(claimed.map((event) => event.eventId)).toEqual(ids)
      expect(await watchedStore.outbox.markManyAsSent(ids, { workerId: 'w' })).toEqual([])
      // FerretDB: each guarded write between taking its version locks and releasing them,
      // one update per version the writes start from ('a' has its own since the warm-up,
      // 'b' and 'c' the one they were inserted with; the claim gave all three one).
      const guarded = (versions: number) =>
        ferretdb ? ['insert', ...Array<string>(versions).fill('update'), 'delete'] : ['update']
      // The claim's read is one query per status on FerretDB (see #readEach).
      const read = ferretdb ? ['find', 'find'] : ['find']
      expect(sent.splice(0)).toEqual([...read, ...guarded(2), 'find', ...guarded(1)])
      expect((await watchedStore.outbox.getCountByStatus()).sent).toBe(3)
      sent.splice(0)
      const claim = await watchedStore.inbox.claim(
        { eventId: 'new', subject: 's', payload: 'p' },
        { leaseMs: 60_000, workerId: 'w' },
      )
      expect(claim.shouldProcess).toBe(true)
      expect(sent).toEqual(['insert'])
      expect(await watchedStore.inbox.get('new')).toEqual(claim.event)
    } finally {
      await watched.close()
    }
  })

  it("a keyed claim round reads its keys' holders (pending, publishing, failed) with one query", async () => {
    const watched = new MongoClient(url ?? '', { monitorCommands: true })
    await watched.connect()
    try {
      const prefix = freshPrefix()
      const watchedStore = createMongoDbStore({ db: watched.db(), collectionPrefix: prefix })
      await watchedStore.migrate()
      await watchedStore.outbox.findOrCreateMany(
        ['a1', 'a2', 'b1'].map((eventId) => ({
          eventId,
          subject: 's',
          payload: 'p',
          orderingKey: eventId[0],
        })),
      )
      // The first guarded write detects the server (hello, buildInfo): out of the count.
      await watchedStore.outbox.markAsPublishing('b1')
      await watchedStore.outbox.retryLater('b1', { errorMessage: 'warm-up', delayMs: 0 })
      const finds: { filter?: Record<string, unknown> }[] = []
      watched.on('commandStarted', (event) => {
        if (event.commandName === 'find') finds.push(event.command as { filter?: Record<string, unknown> })
      })
      const claim = async (keyedDeadLetters: 'block' | 'skip') => {
        finds.splice(0)
        const claimed = await watchedStore.outbox.claim({
          limit: 3,
          leaseMs: 60_000,
          workerId: 'w',
          keyedDeadLetters,
        })
        return {
          claimed: claimed.map((event) => event.eventId),
          holderReads: finds.filter((find) => find.filter?.holding !== undefined).map((find) => find.filter),
          otherHolderReads: finds.filter(
            (find) =>
              find.filter?.holding === undefined && (find.filter?.orderingKey as { $in?: unknown })?.$in,
          ),
        }
      }
      // One round: candidates a1, a2, b1; heads a1, b1 ('block': failed holders count too).
      expect(await claim('block')).toEqual({
        claimed: ['a1', 'b1'],
        holderReads: [{ holding: true, orderingKey: { $in: ['a', 'b'] } }],
        otherHolderReads: [],
      })
      // a2's key has a1 in flight: read with the same one query.
      expect(await claim('skip')).toEqual({
        claimed: [],
        holderReads: [{ holding: true, orderingKey: { $in: ['a'] } }],
        otherHolderReads: [],
      })
    } finally {
      await watched.close()
    }
  })
})

describe('mongodb adapter without a server', () => {
  it('validates the collection prefix before any I/O', () => {
    const db = new MongoClient('mongodb://127.0.0.1:1').db('x')
    expect(() => createMongoDbStore({ db, collectionPrefix: 'bad-prefix' })).toThrow(ValidationError)
    expect(() => createMongoDbStore({ db, collectionPrefix: '' })).toThrow(/collectionPrefix/)
  })

  it('takes maxEventBytes up to 16,000,000, shows it on capabilities, and refuses bigger events before any I/O', async () => {
    const db = new MongoClient('mongodb://127.0.0.1:1').db('x')
    expect(createMongoDbStore({ db }).capabilities.maxEventBytes).toBe(1_048_576)
    const store = createMongoDbStore({ db, maxEventBytes: 200 })
    expect(store.capabilities.maxEventBytes).toBe(200)
    expect(Object.isFrozen(store.capabilities)).toBe(true)
    const huge = { eventId: 'huge', subject: 's', payload: 'x'.repeat(200) }
    await expect(store.outbox.findOrCreate(huge)).rejects.toBeInstanceOf(PayloadTooLargeError)
    await expect(store.outbox.findOrCreateMany([huge])).rejects.toBeInstanceOf(PayloadTooLargeError)
    expect(() => createMongoDbStore({ db, maxEventBytes: 16_000_001 })).toThrow(
      /maxEventBytes must be at most 16000000/,
    )
  })

  it('wraps driver errors in StorageError with the cause kept', async () => {
    const client = new MongoClient('mongodb://127.0.0.1:1/txbox', { serverSelectionTimeoutMS: 200 })
    try {
      const unreachable = createMongoDbStore({ db: client.db(), collectionPrefix: 'nowhere_' })
      const error = await unreachable.outbox.get('x').catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(StorageError)
      expect((error as StorageError).message).toMatch(/^\[txbox\] \[mongodb\] outbox\.get failed/)
      expect((error as StorageError).cause).toBeInstanceOf(Error)
      await expect(
        unreachable.outbox.findOrCreate({ eventId: '', subject: 's', payload: 'p' }),
      ).rejects.toBeInstanceOf(ValidationError)
    } finally {
      await client.close()
    }
  })
})

describe('mongodb migrations files', () => {
  it('are numbered 1..n, the last one is SCHEMA_VERSION, and each is a step migrate() can read', async () => {
    const migrations = migrationFiles()
    expect(migrations.map((migration) => migration.name)).toEqual([
      'indexes',
      'inbox_id_only',
      'ordering_keys',
      'key_decisions',
      'holding',
    ])
    expect(migrations.at(-1)?.version).toBe(SCHEMA_VERSION)
    const [indexes, idOnly, orderingKeys, keyDecisions, holding] = migrations.map(
      (migration) =>
        JSON.parse(migration.body) as {
          collections?: Record<string, { name: string }[]>
          backfill?: {
            collection: string
            where: { status?: unknown }
            set: Record<string, unknown>
            hint?: string
          }[]
          dropCollections?: string[]
        },
    )
    expect(holding?.collections?.outbox?.map((index) => index.name)).toEqual(['txbox_ordering_key_holding'])
    // The backfill covers every status that holds a key, and only those; its last pass reads
    // them at once (an event moved back to a status already passed is not left out).
    expect(
      holding?.backfill?.map((step) => [step.collection, step.where.status, step.set, step.hint]),
    ).toEqual([
      ['outbox', 'pending', { holding: true }, undefined],
      ['outbox', 'publishing', { holding: true }, undefined],
      ['outbox', 'failed', { holding: true }, undefined],
      [
        'outbox',
        { $in: ['pending', 'publishing', 'failed'] },
        { holding: true },
        'txbox_ordering_key_holding',
      ],
    ])
    // Every collection the store names is created by a step (the key counters by the third,
    // the numbering decisions by the fourth).
    const created = [
      ...Object.keys(indexes?.collections ?? {}),
      ...Object.keys(orderingKeys?.collections ?? {}).filter((key) => key !== 'outbox'),
      ...Object.keys(keyDecisions?.collections ?? {}),
    ]
    expect(created.map((key) => `txbox_${key}`).sort()).toEqual(
      Object.values(collectionNames('txbox_')).sort(),
    )
    expect(orderingKeys?.collections?.outbox?.map((index) => index.name)).toEqual([
      'txbox_ordering_key_key_seq',
    ])
    expect(indexes?.collections?.outbox?.map((index) => index.name)).toContain('txbox_status_seq')
    expect(idOnly?.dropCollections).toEqual(['inbox_streams'])
  })
})
