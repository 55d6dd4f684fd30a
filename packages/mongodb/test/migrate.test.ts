import { ManualClock, StorageError } from '@txbox/core'
import type { Db } from 'mongodb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMongoDbStore, type MongoDbStore, SCHEMA_VERSION } from '../src/index.js'
import { collectionNames } from '../src/mongodb-options.js'
import type { OutboxDocument } from '../src/rows.js'
import {
  interceptReads,
  keyed,
  lease,
  type PausedDb,
  pauseAfterCall,
  pauseAfterRead,
  schemaThrough,
  TestServer,
  url,
  version4Documents,
} from './support.js'

/** Where a backfill stops for the other side: before its `read`-th read (from 0), or after it answered (before its writes). */
interface Position {
  readonly read: number
  readonly phase: 'before' | 'after'
}

/** What happens at the position: other processes write, the migration dies, or another migrate() runs whole. */
type Mode = 'live' | 'interrupted' | 'rival'

/**
 * Migration 0005's backfill (`holding: true` on keyed events a version-4 process left
 * pending, publishing or failed) beside processes that keep working: every interleaving of
 * one burst of their writes with the backfill's reads and writes, on the server of
 * TXBOX_MONGODB_URL. The burst moves events between every pair of statuses the backfill reads
 * (pending -> publishing, publishing -> pending, failed -> pending, publishing -> failed,
 * publishing -> sent) and enqueues; after migrate() every keyed event that is not sent holds
 * its key, each process's writes are kept, and a claim takes only the heads of the keys.
 */
describe.skipIf(!url)('mongodb migration 0005 beside running processes (TXBOX_MONGODB_URL)', () => {
  const server = new TestServer()
  let db: Db

  beforeAll(async () => {
    db = await server.connect()
  })

  afterAll(() => server.close())

  /** A version-4 database: keys C, A, B, D, E with their first event in each status, an unkeyed event. */
  const version4 = async (prefix: string, now: Date): Promise<void> => {
    await schemaThrough(db, prefix, 4)
    const names = collectionNames(prefix)
    const document = version4Documents(now)
    const old = { claimedBy: 'old', claimedAt: now, leaseUntil: new Date(now.getTime() + 60_000) }
    await db.collection<OutboxDocument>(names.outbox).insertMany([
      // First in enqueue order: the burst's claim of one event takes c1.
      document('c1', 'C', 1, 'pending'),
      document('c2', 'C', 2, 'pending'),
      document('a1', 'A', 1, 'publishing', old),
      document('a2', 'A', 2, 'pending'),
      document('b1', 'B', 1, 'failed', { errorMessage: 'x', retryCount: 3 }),
      document('b2', 'B', 2, 'pending'),
      document('d1', 'D', 1, 'publishing', old),
      document('d2', 'D', 2, 'pending'),
      document('e1', 'E', 1, 'publishing', old),
      document('e2', 'E', 2, 'pending'),
      document('u1', undefined, undefined, 'pending'),
    ])
    await db
      .collection(names.outboxKeys)
      .insertMany(['C', 'A', 'B', 'D', 'E'].map((key) => ({ _id: key as never, lastSeq: 2 })))
  }

  /** What running processes do at once: one of every move between the statuses the backfill reads. */
  const burst = async (store: MongoDbStore): Promise<void> => {
    const claimed = await store.outbox.claim({ limit: 1, workerId: 'live', ...lease })
    expect(claimed.map((event) => event.eventId)).toEqual(['c1'])
    await store.outbox.retryLater('a1', { errorMessage: 'nats down', delayMs: 5_000, workerId: 'old' })
    expect(await store.outbox.requeueFailed(['b1'])).toBe(1)
    await store.outbox.markAsFailed('d1', 'poison', { workerId: 'old' })
    await store.outbox.markAsSent('e1', { workerId: 'old' })
    await store.outbox.findOrCreate(keyed('f1', 'F'))
  }

  /** The events after the burst and migrate(), as the burst left them, each keyed one not sent holding its key. */
  const expected = [
    ['a1', 'pending', true, 1, undefined, 1, 'nats down'],
    ['a2', 'pending', true, 2, undefined, 0, undefined],
    ['b1', 'pending', true, 1, undefined, 0, 'x'],
    ['b2', 'pending', true, 2, undefined, 0, undefined],
    ['c1', 'publishing', true, 1, 'live', 0, undefined],
    ['c2', 'pending', true, 2, undefined, 0, undefined],
    ['d1', 'failed', true, 1, undefined, 1, 'poison'],
    ['d2', 'pending', true, 2, undefined, 0, undefined],
    ['e1', 'sent', undefined, 1, undefined, 0, undefined],
    ['e2', 'pending', true, 2, undefined, 0, undefined],
    ['f1', 'pending', true, 1, undefined, 0, undefined],
    ['u1', 'pending', undefined, undefined, undefined, 0, undefined],
  ]

  /**
   * A version-4 database migrated by a store whose backfill reads stop at `at` for `mode`;
   * answers whether the position was reached (a backfill makes a finite number of reads).
   */
  const scenario = async (mode: Mode, at: Position): Promise<boolean> => {
    const prefix = server.freshPrefix()
    const names = collectionNames(prefix)
    const clock = new ManualClock()
    await version4(prefix, clock.now())
    const plain = async () =>
      createMongoDbStore({ db: await server.connect(), collectionPrefix: prefix, clock: clock.now })
    const live = await plain()
    let reads = 0
    let reached = false
    const act = async () => {
      reached = true
      if (mode === 'interrupted') throw new Error('connection lost')
      if (mode === 'rival') await (await plain()).migrate()
      await burst(live)
    }
    const backfillRead = (filter: Record<string, unknown>) =>
      JSON.stringify(filter.holding) === JSON.stringify({ $exists: false })
    const migrating = interceptReads(await server.connect(), names.outbox, async (filter, read) => {
      if (!backfillRead(filter)) return read()
      const index = reads++
      if (index === at.read && at.phase === 'before') await act()
      const page = await read()
      if (index === at.read && at.phase === 'after') await act()
      return page
    })
    const migrator = createMongoDbStore({ db: migrating, collectionPrefix: prefix, clock: clock.now })
    if (mode === 'interrupted') {
      const failed = await migrator.migrate().catch((error: unknown) => error)
      if (!reached) return false
      expect(failed).toBeInstanceOf(StorageError)
      expect(await db.collection(names.meta).findOne({ _id: 'schema' as never })).toMatchObject({
        version: 4,
      })
      await burst(live)
      await (await plain()).migrate()
    } else {
      await migrator.migrate()
      if (!reached) return false
    }
    const where = `${mode} ${at.phase} backfill read ${at.read}`
    expect(await db.collection(names.meta).find({}).toArray(), where).toEqual([
      { _id: 'schema', version: SCHEMA_VERSION, migratedAt: expect.any(Date) },
    ])
    const stored = await db.collection<OutboxDocument>(names.outbox).find({}).sort({ _id: 1 }).toArray()
    expect(
      stored.map((doc) => [
        doc._id,
        doc.status,
        doc.holding,
        doc.keySeq,
        doc.claimedBy,
        doc.retryCount,
        doc.errorMessage,
      ]),
      where,
    ).toEqual(expected)
    // a1 waits for its retry and d1 is a dead letter: their keys give nothing; c1 is in flight.
    const claimed = await live.outbox.claim({ limit: 10, workerId: 'after', ...lease })
    expect(claimed.map((event) => event.eventId).sort(), where).toEqual(['b1', 'e2', 'f1', 'u1'])
    return true
  }

  /**
   * On a version-4 database, `act` on a store of the Db `pausing` gives: where it stops, it
   * waits while another store's migrate() runs whole.
   */
  const whileMigrating = async <T>(
    pausing: (db: Db, outbox: string) => PausedDb,
    act: (store: MongoDbStore) => Promise<T>,
  ) => {
    const prefix = server.freshPrefix()
    const outbox = collectionNames(prefix).outbox
    const clock = new ManualClock()
    await version4(prefix, clock.now())
    const { db: paused, pause } = pausing(await server.connect(), outbox)
    const store = createMongoDbStore({ db: paused, collectionPrefix: prefix, clock: clock.now })
    const acting = act(store)
    await pause.reached
    await createMongoDbStore({ db, collectionPrefix: prefix, clock: clock.now }).migrate()
    pause.open()
    return { result: await acting, store, outbox: db.collection<OutboxDocument>(outbox) }
  }

  it("a claim paused between its head check and its compare-and-set while migrate() runs loses that write, and the next claim takes the key's head", async () => {
    const { result, store, outbox } = await whileMigrating(
      (base, name) => pauseAfterRead(base, name, (filter) => filter.holding === true),
      (store) => store.outbox.claim({ limit: 1, workerId: 'slow', ...lease }),
    )
    // Its write of c1 lost to the backfill's (a new version); C is decided for this claim, which goes on past it.
    expect(result.map((event) => event.eventId)).toEqual(['u1'])
    expect(await outbox.findOne({ _id: 'c1' })).toMatchObject({ status: 'pending', holding: true })
    const next = await store.outbox.claim({ limit: 10, workerId: 'next', ...lease })
    expect(next.map((event) => event.eventId)).toEqual(['c1'])
  })

  it('a mark paused between its read and its write while migrate() runs applies, and a sent event keeps no holding field', async () => {
    const { outbox } = await whileMigrating(
      (base, name) => pauseAfterCall(base, name, 'findOne'),
      (store) => store.outbox.markAsSent('e1', { workerId: 'old' }),
    )
    const stored = await outbox.findOne({ _id: 'e1' })
    expect(stored).toMatchObject({ status: 'sent' })
    expect(stored).not.toHaveProperty('holding')
    expect(stored).not.toHaveProperty('claimedBy')
  })

  it.each<Mode>(['live', 'interrupted', 'rival'])(
    'the backfill %s at each of its reads: every keyed event not sent holds its key, every other write is kept',
    async (mode) => {
      let positions = 0
      for (let read = 0; ; read++) {
        if (!(await scenario(mode, { read, phase: 'before' }))) break
        positions++
        if (!(await scenario(mode, { read, phase: 'after' }))) break
        positions++
      }
      // The three status passes and the final pass each read at least twice.
      expect(positions).toBeGreaterThanOrEqual(8)
    },
  )
})
