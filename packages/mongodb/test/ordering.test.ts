import { randomUUID } from 'node:crypto'
import { ManualClock, type OutboxEvent } from '@txbox/core'
import type { Db } from 'mongodb'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMongoDbStore, type MongoDbStore } from '../src/index.js'
import { decisionId, type KeyDecisionDocument } from '../src/key-sequences.js'
import { collectionNames } from '../src/mongodb-options.js'
import { NUMBER_ORPHANS_AFTER_MS } from '../src/mongodb-outbox-repository.js'
import type { OutboxDocument, OutboxKeyDocument } from '../src/rows.js'
import {
  gate,
  ids,
  interceptCalls,
  interceptReads,
  keyed,
  lease,
  pauseAfterRead,
  TestServer,
  url,
} from './support.js'

/**
 * Ordering keys on the server of TXBOX_MONGODB_URL (FerretDB v1 here: no transactions, and
 * updates that are not atomic), through the numbering without a transaction: insert first,
 * then number under the key's lock. Concurrency goes through separate MongoClients, as
 * separate processes would.
 */
describe.skipIf(!url)('mongodb ordering keys (TXBOX_MONGODB_URL)', () => {
  const server = new TestServer()
  const connect = () => server.connect()
  let db: Db

  beforeAll(async () => {
    db = await connect()
  })

  afterAll(() => server.close())

  /** A migrated store on a fresh prefix, and a peer on its own client (another process). */
  const stores = async (
    clock = new ManualClock(),
  ): Promise<{ store: MongoDbStore; peer: MongoDbStore; prefix: string; clock: ManualClock }> => {
    const prefix = server.freshPrefix()
    const store = createMongoDbStore({ db, collectionPrefix: prefix, clock: clock.now })
    await store.migrate()
    const peer = createMongoDbStore({ db: await connect(), collectionPrefix: prefix, clock: clock.now })
    return { store, peer, prefix, clock }
  }

  it('numbers each key from 1, a batch in input order, keeps the number of a duplicate, and none on unkeyed events', async () => {
    const { store, prefix } = await stores()
    const first = await store.outbox.findOrCreate(keyed('a1', 'A'))
    expect(first).toMatchObject({ orderingKey: 'A', keySeq: 1 })
    const batch = await store.outbox.findOrCreateMany([
      keyed('b1', 'B'),
      keyed('a2', 'A'),
      { eventId: 'plain', subject: 's', payload: 'p' },
      keyed('b2', 'B'),
      keyed('a3', 'A'),
      keyed('lower-a', 'a'),
    ])
    expect(batch.map((event) => [event.eventId, event.orderingKey, event.keySeq])).toEqual([
      ['b1', 'B', 1],
      ['a2', 'A', 2],
      ['plain', undefined, undefined],
      ['b2', 'B', 2],
      ['a3', 'A', 3],
      ['lower-a', 'a', 1],
    ])
    expect(batch[2]).not.toHaveProperty('keySeq')
    expect(batch[2]).not.toHaveProperty('orderingKey')
    // A duplicate answers the stored event and changes nothing, whatever key it names.
    expect(await store.outbox.findOrCreate(keyed('a2', 'B'))).toMatchObject({ orderingKey: 'A', keySeq: 2 })
    expect(await store.outbox.get('a3')).toMatchObject({ orderingKey: 'A', keySeq: 3 })
    const names = collectionNames(prefix)
    expect(
      await db.collection<OutboxKeyDocument>(names.outboxKeys).find({}).sort({ _id: 1 }).toArray(),
    ).toEqual([
      { _id: 'A', lastSeq: 3 },
      { _id: 'B', lastSeq: 2 },
      { _id: 'a', lastSeq: 1 },
    ])
    expect(await db.collection(names.locks).countDocuments({})).toBe(0)
  })

  it("keeps a key's counter after cleanup deleted every event of the key", async () => {
    const { store, clock } = await stores()
    await store.outbox.findOrCreate(keyed('k1', 'K'))
    const [claimed] = await store.outbox.claim({ limit: 10, workerId: 'w', ...lease })
    expect(claimed?.keySeq).toBe(1)
    await store.outbox.markAsSent('k1', { workerId: 'w' })
    clock.advance(2 * 86_400_000)
    expect(await store.outbox.cleanup(1)).toBe(1)
    expect(await store.outbox.findOrCreate(keyed('k2', 'K'))).toMatchObject({ keySeq: 2 })
    // The id enqueued again after cleanup is a new event with a new number.
    expect(await store.outbox.findOrCreate(keyed('k1', 'K'))).toMatchObject({ keySeq: 3 })
  })

  it('claims only the head of each key: a retry keeps the key held, an expired lease gives back the same event, a dead letter blocks until redriven', async () => {
    const { store, clock } = await stores()
    await store.outbox.findOrCreateMany([
      keyed('x1', 'X'),
      keyed('x2', 'X'),
      keyed('y1', 'Y'),
      { eventId: 'free', subject: 's', payload: 'p' },
      keyed('y2', 'Y'),
    ])
    const claim = (workerId: string, keyedDeadLetters?: 'block' | 'skip') =>
      store.outbox.claim({ limit: 10, workerId, ...lease, ...(keyedDeadLetters ? { keyedDeadLetters } : {}) })
    expect(ids(await claim('w1'))).toEqual(['x1', 'y1', 'free'])
    expect(await claim('w2')).toEqual([])
    await store.outbox.retryLater('x1', { errorMessage: 'nats down', delayMs: 5_000, workerId: 'w1' })
    await store.outbox.markAsSent('y1', { workerId: 'w1' })
    // x1 waits for its backoff and holds X; y1 is sent, so Y goes on.
    expect(ids(await claim('w2'))).toEqual(['y2'])
    clock.advance(5_000)
    expect(ids(await claim('w2'))).toEqual(['x1'])
    clock.advance(lease.leaseMs)
    // The leases expired: the same events again, never the next one of X.
    expect(ids(await claim('w3'))).toEqual(['x1', 'free', 'y2'])
    await store.outbox.markAsFailed('x1', 'poison', { workerId: 'w3' })
    expect(await claim('w4')).toEqual([])
    expect(ids(await claim('w4', 'skip'))).toEqual(['x2'])
    await store.outbox.markAsSent('x2', { workerId: 'w4' })
    expect(await store.outbox.requeueFailed(['x1'])).toBe(1)
    expect(ids(await claim('w5'))).toEqual(['x1'])
  })

  it('reads past a long key: the heads of keys behind its backlog are claimed in the same call', async () => {
    const { store } = await stores()
    await store.outbox.findOrCreateMany(
      Array.from({ length: 30 }, (_, index) => keyed(`hot-${index}`, 'hot')),
    )
    await store.outbox.findOrCreateMany([keyed('c1', 'C'), keyed('d1', 'D'), keyed('c2', 'C')])
    const claimed = await store.outbox.claim({ limit: 10, workerId: 'w', ...lease })
    expect(claimed.map((event) => event.eventId)).toEqual(['hot-0', 'c1', 'd1'])
  })

  it('claims a head that sorts behind a later event of its key in enqueue order (two instances, one frozen clock)', async () => {
    const { store, peer, clock } = await stores()
    // Each instance orders its own events; across instances in one millisecond the order is
    // unspecified, so the key's second event may sort before its first.
    const later = new Date(clock.now().getTime() + 60_000)
    await store.outbox.findOrCreateMany(
      Array.from({ length: 5 }, (_, index) => ({
        eventId: `delayed-${index}`,
        subject: 's',
        payload: 'p',
        availableAt: later,
      })),
    )
    expect(await store.outbox.findOrCreate(keyed('first', 'K'))).toMatchObject({ keySeq: 1 })
    expect(await peer.outbox.findOrCreate(keyed('second', 'K'))).toMatchObject({ keySeq: 2 })
    const [candidate] = await store.outbox.findPending({ limit: 1 })
    expect(candidate?.eventId).toBe('second')
    const claimed = await store.outbox.claim({ limit: 1, workerId: 'w', ...lease })
    expect(claimed.map((event) => [event.eventId, event.keySeq])).toEqual([['first', 1]])
    expect(await peer.outbox.claim({ limit: 1, workerId: 'w2', ...lease })).toEqual([])
  })

  it('two clients enqueueing one key at once: distinct numbers, increasing in each caller’s completion order, no lock left', async () => {
    const { store, peer, prefix } = await stores()
    const sequential = async (repository: MongoDbStore, name: string): Promise<number[]> => {
      const numbers: number[] = []
      for (let index = 0; index < 15; index++) {
        const event =
          index % 3 === 0
            ? await repository.outbox.findOrCreateMany([
                keyed(`${name}-${index}`, 'K'),
                keyed(`${name}-${index}b`, 'K'),
              ])
            : [await repository.outbox.findOrCreate(keyed(`${name}-${index}`, 'K'))]
        numbers.push(...event.map((stored) => stored.keySeq ?? Number.NaN))
      }
      return numbers
    }
    const [mine, theirs] = await Promise.all([sequential(store, 'mine'), sequential(peer, 'theirs')])
    for (const numbers of [mine, theirs])
      expect(numbers).toEqual([...numbers].sort((a, b) => a - b).filter((n, i, all) => all.indexOf(n) === i))
    const all = [...mine, ...theirs]
    expect(new Set(all).size).toBe(40)
    // The stored numbers are the ones answered.
    const stored = await db
      .collection<OutboxDocument>(collectionNames(prefix).outbox)
      .find({}, { projection: { keySeq: 1 } })
      .toArray()
    expect(stored.map((doc) => doc.keySeq).sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(
      [...all].sort((a, b) => a - b),
    )
    expect(await db.collection(collectionNames(prefix).locks).countDocuments({})).toBe(0)
  })

  it('40 enqueues of one key at once from four clients: 40 distinct numbers, each stored as answered', async () => {
    const { store, peer, prefix } = await stores()
    const others = await Promise.all(
      [0, 1].map(async () => createMongoDbStore({ db: await connect(), collectionPrefix: prefix })),
    )
    const repositories = [store, peer, ...others]
    const answered = await Promise.all(
      Array.from({ length: 40 }, (_, index) =>
        (repositories[index % repositories.length] as MongoDbStore).outbox.findOrCreate(
          keyed(`burst-${index}`, 'hot'),
        ),
      ),
    )
    const numbers = answered.map((event) => event.keySeq)
    expect(new Set(numbers).size).toBe(40)
    for (const event of answered) expect((await store.outbox.get(event.eventId))?.keySeq).toBe(event.keySeq)
  })

  it('enqueuers racing two claimers: every event is claimed once, and per key only after the previous one was sent, in keySeq order', async () => {
    const { store, peer } = await stores()
    const keys = ['P', 'Q', 'R']
    const perEnqueuer = 12
    let enqueuing = true
    const enqueue = async (repository: MongoDbStore, name: string): Promise<void> => {
      for (let index = 0; index < perEnqueuer; index++)
        await repository.outbox.findOrCreate(keyed(`${name}-${index}`, keys[index % keys.length] ?? 'P'))
    }
    const published: OutboxEvent[] = []
    const inFlight = new Map<string, string>()
    const violations: string[] = []
    const relay = async (repository: MongoDbStore, workerId: string): Promise<void> => {
      for (;;) {
        const wasEnqueuing = enqueuing
        const batch = await repository.outbox.claim({ limit: 5, workerId, ...lease })
        for (const event of batch) {
          const key = event.orderingKey ?? ''
          const holder = inFlight.get(key)
          if (holder !== undefined) violations.push(`${event.eventId} claimed while ${holder} is in flight`)
          inFlight.set(key, event.eventId)
        }
        for (const event of batch) {
          published.push(event)
          inFlight.delete(event.orderingKey ?? '')
          await repository.outbox.markAsSent(event.eventId, { workerId })
        }
        if (batch.length === 0 && !wasEnqueuing) return
      }
    }
    const relays = Promise.all([relay(store, 'r1'), relay(peer, 'r2')])
    await Promise.all([enqueue(store, 'e1'), enqueue(peer, 'e2')])
    enqueuing = false
    await relays
    expect(violations).toEqual([])
    expect(published).toHaveLength(2 * perEnqueuer)
    expect(new Set(published.map((event) => event.eventId)).size).toBe(2 * perEnqueuer)
    for (const key of keys) {
      const order = published.filter((event) => event.orderingKey === key).map((event) => event.keySeq ?? 0)
      expect(order).toEqual([...order].sort((a, b) => a - b))
    }
  })

  it('an event whose enqueuer died before numbering it holds its key, until a claim numbers it once it is old', async () => {
    const { store, prefix, clock } = await stores()
    const outbox = db.collection<OutboxDocument>(collectionNames(prefix).outbox)
    await store.outbox.findOrCreateMany([keyed('first', 'O'), keyed('later', 'O')])
    // What a crash between the insert and the numbering leaves: the event without keySeq
    // (the next numbering of the key would number it too, so it comes last here).
    await store.outbox.findOrCreate(keyed('orphan', 'O'))
    await outbox.updateOne({ _id: 'orphan' }, { $unset: { keySeq: '' } })
    expect(await store.outbox.get('orphan')).not.toHaveProperty('keySeq')
    // 'first' (1) and 'later' (2) are numbered, but the orphan's number might come out lower.
    expect(await store.outbox.claim({ limit: 10, workerId: 'w', ...lease })).toEqual([])
    clock.advance(NUMBER_ORPHANS_AFTER_MS)
    const [head] = await store.outbox.claim({ limit: 10, workerId: 'w', ...lease })
    expect(head).toMatchObject({ eventId: 'first', keySeq: 1 })
    expect(await store.outbox.get('orphan')).toMatchObject({ keySeq: 4 })
    await store.outbox.markAsSent('first', { workerId: 'w' })
    const [next] = await store.outbox.claim({ limit: 10, workerId: 'w', ...lease })
    expect(next?.eventId).toBe('later')
  })

  it('a duplicate of an event still unnumbered numbers it and answers its number', async () => {
    const { store, prefix } = await stores()
    await store.outbox.findOrCreate(keyed('d', 'D'))
    await db
      .collection<OutboxDocument>(collectionNames(prefix).outbox)
      .updateOne({ _id: 'd' }, { $unset: { keySeq: '' } })
    expect(await store.outbox.findOrCreate(keyed('d', 'D'))).toMatchObject({ orderingKey: 'D', keySeq: 2 })
  })

  /**
   * A store whose inserts into `<prefix>locks` stop at a gate while `gate.closed`: the
   * numberer is paused (a GC pause, a partition) at the moment it writes its decision.
   */
  const pausable = async (prefix: string, clock: ManualClock) => {
    const pause = gate()
    const control = { closed: false, open: pause.open }
    const paused = interceptCalls(
      await connect(),
      collectionNames(prefix).locks,
      'insertMany',
      async (call) => {
        if (control.closed) {
          control.closed = false
          await pause.wait()
        }
        return call()
      },
    )
    const store = createMongoDbStore({ db: paused, collectionPrefix: prefix, clock: clock.now })
    return { store, gate: control, reached: pause.reached }
  }

  it('a numberer paused past any lease between its read and its decision writes no number: the rival decides, the paused one retries and numbers after it', async () => {
    const { store, prefix, clock } = await stores()
    const { store: slow, gate, reached } = await pausable(prefix, clock)
    await store.outbox.findOrCreate(keyed('k1', 'K'))
    gate.closed = true
    // The slow numberer has read lastSeq 1 and its events (s1, s2 unnumbered), then pauses.
    const slowBatch = slow.outbox.findOrCreateMany([keyed('s1', 'K'), keyed('s2', 'K')])
    await reached
    clock.advance(10 * 60_000)
    // The rival numbers every unnumbered event of K in enqueue order, the slow one's too.
    const rival = await store.outbox.findOrCreateMany([keyed('r1', 'K'), keyed('r2', 'K')])
    expect(rival.map((event) => event.keySeq)).toEqual([4, 5])
    gate.open()
    const resumed = await slowBatch
    expect(resumed.map((event) => [event.eventId, event.keySeq])).toEqual([
      ['s1', 2],
      ['s2', 3],
    ])
    const stored = await db
      .collection<OutboxDocument>(collectionNames(prefix).outbox)
      .find({}, { projection: { keySeq: 1, seq: 1 } })
      .sort({ seq: 1 })
      .toArray()
    expect(stored.map((doc) => [doc._id, doc.keySeq])).toEqual([
      ['k1', 1],
      ['s1', 2],
      ['s2', 3],
      ['r1', 4],
      ['r2', 5],
    ])
    expect(
      await db.collection<OutboxKeyDocument>(collectionNames(prefix).outboxKeys).findOne({ _id: 'K' }),
    ).toEqual({
      _id: 'K',
      lastSeq: 5,
    })
  })

  it('a numberer paused past any lease after its read, while rivals decide on the same counter value, never hands out a number twice', async () => {
    const { store, peer, prefix, clock } = await stores()
    const { store: slow, gate, reached } = await pausable(prefix, clock)
    gate.closed = true
    const slowBatch = slow.outbox.findOrCreateMany([keyed('s1', 'K'), keyed('s2', 'K'), keyed('s3', 'J')])
    await reached
    clock.advance(10 * 60_000)
    // Rivals number K and J (s1..s3 among them) and go on: the counters move past the
    // value the paused numberer read.
    await Promise.all([
      store.outbox.findOrCreateMany([keyed('a1', 'K'), keyed('a2', 'J')]),
      peer.outbox.findOrCreateMany([keyed('b1', 'K'), keyed('b2', 'K')]),
    ])
    await store.outbox.findOrCreate(keyed('c1', 'K'))
    gate.open()
    await slowBatch
    await slow.outbox.findOrCreate(keyed('s4', 'K'))
    const outbox = db.collection<OutboxDocument>(collectionNames(prefix).outbox)
    // No number twice, none skipped; the paused numberer's events, enqueued first, come first.
    for (const key of ['K', 'J']) {
      const numbers = (await outbox.find({ orderingKey: key }).toArray()).map((event) => event.keySeq)
      expect(numbers.sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(
        Array.from({ length: numbers.length }, (_, index) => index + 1),
      )
    }
    const numberOf = async (id: string) => (await outbox.findOne({ _id: id }))?.keySeq
    expect([await numberOf('s1'), await numberOf('s2'), await numberOf('s3')]).toEqual([1, 2, 1])
    expect(await numberOf('s4')).toBe(7)
  })

  it('a decision whose numberer died before applying it is completed by the next numbering of the key', async () => {
    const { store, prefix } = await stores()
    const names = collectionNames(prefix)
    const outbox = db.collection<OutboxDocument>(names.outbox)
    const decisions = db.collection<KeyDecisionDocument>(names.outboxKeyDecisions)
    await store.outbox.findOrCreate(keyed('d1', 'D'))
    // What a crash right after the decision leaves: d2 and d3 inserted and decided (2, 3),
    // not numbered, the counter still at 1.
    await store.outbox.findOrCreateMany([keyed('d2', 'D'), keyed('d3', 'D')])
    await outbox.updateMany({ _id: { $in: ['d2', 'd3'] } }, { $unset: { keySeq: '' } })
    await db.collection<OutboxKeyDocument>(names.outboxKeys).updateOne({ _id: 'D' }, { $set: { lastSeq: 1 } })
    expect(await decisions.findOne({ _id: decisionId('D', 1) })).toMatchObject({ events: ['d2', 'd3'] })
    expect(await store.outbox.findOrCreate(keyed('d4', 'D'))).toMatchObject({ keySeq: 4 })
    expect(await store.outbox.get('d2')).toMatchObject({ keySeq: 2 })
    expect(await store.outbox.get('d3')).toMatchObject({ keySeq: 3 })
  })

  it('a redrive gives new versions to the pending events a claim that read before it may take, and a dead letter nothing went past its old number', async () => {
    const { store, prefix } = await stores()
    const outbox = db.collection<OutboxDocument>(collectionNames(prefix).outbox)
    const rev = async (id: string) => (await outbox.findOne({ _id: id }))?.rev
    await store.outbox.findOrCreateMany([keyed('h1', 'H'), keyed('h2', 'H'), keyed('h3', 'H')])
    const block = { limit: 10, workerId: 'w', ...lease }
    expect((await store.outbox.claim(block)).map((event) => event.eventId)).toEqual(['h1'])
    await store.outbox.markAsFailed('h1', 'dead letter', { workerId: 'w' })
    // What a claim with 'skip' that read H now would write its head h2 with.
    const [h2, h3] = [await rev('h2'), await rev('h3')]
    expect(await store.outbox.requeueFailed(['h1'])).toBe(1)
    // Its compare-and-set would match nothing now; h3 was never a head past h1.
    expect(await rev('h2')).not.toBe(h2)
    expect(await rev('h3')).toBe(h3)
    expect(await store.outbox.get('h1')).toMatchObject({ status: 'pending', keySeq: 1 })
    expect((await store.outbox.claim(block)).map((event) => event.eventId)).toEqual(['h1'])
  })

  it("a claim with 'skip' that chose a key's next event before a redrive of its dead letter, and writes after it, takes nothing of the key", async () => {
    const { store, prefix, clock } = await stores()
    // The claim stops once its head check has answered, before its compare-and-set.
    const { db: paused, pause } = pauseAfterRead(
      await connect(),
      collectionNames(prefix).outbox,
      (filter) => filter.holding === true,
    )
    const stale = createMongoDbStore({ db: paused, collectionPrefix: prefix, clock: clock.now })
    await store.outbox.findOrCreateMany([keyed('x1', 'X'), keyed('x2', 'X')])
    const claim = () => store.outbox.claim({ limit: 10, workerId: 'w', ...lease })
    expect(ids(await claim())).toEqual(['x1'])
    await store.outbox.markAsFailed('x1', 'dead letter', { workerId: 'w' })
    const claiming = stale.outbox.claim({ limit: 10, workerId: 'stale', ...lease, keyedDeadLetters: 'skip' })
    await pause.reached
    // x1 gets its number back (nothing of X is publishing): it is X's head again.
    expect(await store.outbox.requeueFailed(['x1'])).toBe(1)
    pause.open()
    expect(ids(await claiming), 'x2 is no longer the head of X').toEqual([])
    expect(await store.outbox.get('x2')).toMatchObject({ status: 'pending' })
    expect(ids(await claim())).toEqual(['x1'])
  })

  it('a dead letter whose requeuer died before placing it holds its key, then claims number it at the end, never at its old number from a stale decision', async () => {
    const { store, prefix, clock } = await stores()
    const names = collectionNames(prefix)
    const outbox = db.collection<OutboxDocument>(names.outbox)
    const skip = { limit: 10, workerId: 'w', ...lease, keyedDeadLetters: 'skip' as const }
    await store.outbox.findOrCreate(keyed('r0', 'R'))
    expect(ids(await store.outbox.claim(skip))).toEqual(['r0'])
    await store.outbox.markAsSent('r0', { workerId: 'w' })
    // One decision on R's counter at 1 numbers r1, r2, r3 (2, 3, 4).
    await store.outbox.findOrCreateMany([keyed('r1', 'R'), keyed('r2', 'R'), keyed('r3', 'R')])
    expect(ids(await store.outbox.claim(skip))).toEqual(['r1'])
    await store.outbox.markAsFailed('r1', 'dead letter', { workerId: 'w' })
    expect(ids(await store.outbox.claim(skip))).toEqual(['r2'])
    // What the redrive's first write leaves when its requeuer dies right after it.
    await outbox.updateOne(
      { _id: 'r1' },
      {
        $set: {
          status: 'pending',
          availableAt: clock.now(),
          retryCount: 0,
          redrivenFrom: 2,
          rev: randomUUID(),
        },
        $unset: { keySeq: '', claimedBy: '', leaseUntil: '' },
      },
    )
    // A numberer that read R's counter before r1 was first numbered, paused since: it finds
    // the decision that gave r1 its number 2 and completes it.
    await db.collection<OutboxKeyDocument>(names.outboxKeys).updateOne({ _id: 'R' }, { $set: { lastSeq: 1 } })
    expect(await store.outbox.claim(skip), 'r1 is unnumbered: R is held').toEqual([])
    clock.advance(NUMBER_ORPHANS_AFTER_MS)
    // The claims complete the old decision (r1 keeps no number from it), then number r1 anew.
    for (let round = 0; round < 3; round++) expect(await store.outbox.claim(skip)).toEqual([])
    expect(await store.outbox.get('r1')).toMatchObject({ status: 'pending', keySeq: 5 })
    expect(await store.outbox.get('r2')).toMatchObject({ status: 'publishing', keySeq: 3 })
    await store.outbox.markAsSent('r2', { workerId: 'w' })
    expect(ids(await store.outbox.claim(skip))).toEqual(['r3'])
  })

  /**
   * A store whose claim stops before the first holder read (a read by `orderingKey: { $in }`)
   * that `stopsAt` picks, once `gate.closed`; the holder reads before it answer (`gate.others`).
   * One head check reads all holders at once (`holding: true`); the per-status reads of the
   * previous release are still told apart, so the tests show what such a read missed.
   */
  const holdsHolderRead = async (
    prefix: string,
    clock: ManualClock,
    stopsAt: (filter: { status?: string; holding?: boolean }) => boolean,
  ) => {
    const pause = gate()
    const control = { closed: false, open: pause.open, others: [] as Promise<unknown>[] }
    const held = interceptReads(await connect(), collectionNames(prefix).outbox, (filter, read) => {
      const { orderingKey } = filter as { orderingKey?: { $in?: unknown } }
      if (orderingKey?.$in === undefined) return read()
      if (control.closed && stopsAt(filter)) {
        control.closed = false
        return pause.wait().then(read)
      }
      const answer = read()
      control.others.push(answer)
      return answer
    })
    const store = createMongoDbStore({ db: held, collectionPrefix: prefix, clock: clock.now })
    return { store, gate: control, reached: pause.reached }
  }

  it("a claim that lands between another claim's reads of a key's holders is seen by it: that claim does not take the key's next event beside it", async () => {
    const { store, prefix, clock } = await stores()
    // Before its `pending` read, or its one read of every holder.
    const {
      store: slow,
      gate,
      reached,
    } = await holdsHolderRead(
      prefix,
      clock,
      (filter) => filter.status === 'pending' || filter.holding === true,
    )
    const later = new Date(clock.now().getTime() + 60_000)
    await store.outbox.findOrCreateMany(
      Array.from({ length: 5 }, (_, index) => ({
        eventId: `delayed-${index}`,
        subject: 's',
        payload: 'p',
        availableAt: later,
      })),
    )
    // One frozen millisecond, two instances: 'second' sorts before 'first' in enqueue order,
    // so a claim of one event reads 'second' as its candidate and finds 'first' as a holder.
    expect(await store.outbox.findOrCreate(keyed('first', 'K'))).toMatchObject({ keySeq: 1 })
    expect(await slow.outbox.findOrCreate(keyed('second', 'K'))).toMatchObject({ keySeq: 2 })
    gate.closed = true
    const slowClaim = slow.outbox.claim({ limit: 1, workerId: 'slow', ...lease })
    await reached
    // Whatever the slow claim read of the holders before its `pending` read has answered.
    await Promise.all(gate.others)
    const fast = await store.outbox.claim({ limit: 1, workerId: 'fast', ...lease })
    expect(fast.map((event) => event.eventId)).toEqual(['first'])
    gate.open()
    expect(
      (await slowClaim).map((event) => event.eventId),
      "'first' is publishing: 'second' is not its key's head",
    ).toEqual([])
    expect(await store.outbox.get('second')).toMatchObject({ status: 'pending' })
  })

  it("a head moved back to pending (retryLater) while another claim reads the key's holders is seen by it: that claim takes nothing of the key", async () => {
    const { store, prefix, clock } = await stores()
    // Before its `publishing` read (its `pending` one answered), or its one read of every holder.
    const {
      store: slow,
      gate,
      reached,
    } = await holdsHolderRead(
      prefix,
      clock,
      (filter) => filter.status === 'publishing' || filter.holding === true,
    )
    await store.outbox.findOrCreateMany([keyed('first', 'K'), keyed('second', 'K')])
    expect(
      (await store.outbox.claim({ limit: 1, workerId: 'fast', ...lease })).map((e) => e.eventId),
    ).toEqual(['first'])
    gate.closed = true
    const slowClaim = slow.outbox.claim({ limit: 1, workerId: 'slow', ...lease })
    await reached
    await Promise.all(gate.others)
    await store.outbox.retryLater('first', { errorMessage: 'nats down', delayMs: 5_000, workerId: 'fast' })
    gate.open()
    expect(
      (await slowClaim).map((event) => event.eventId),
      "'first' is pending again, waiting for its retry: 'second' is not its key's head",
    ).toEqual([])
    clock.advance(5_000)
    expect(
      (await store.outbox.claim({ limit: 2, workerId: 'fast', ...lease })).map((e) => e.eventId),
    ).toEqual(['first'])
  })

  it('a publishing event is the only claimable event of its key, even above a pending one (a claim that ran past a redrive)', async () => {
    const { store, prefix, clock } = await stores()
    const outbox = db.collection<OutboxDocument>(collectionNames(prefix).outbox)
    const claim = () => store.outbox.claim({ limit: 10, workerId: 'w', ...lease, keyedDeadLetters: 'skip' })
    await store.outbox.findOrCreateMany([keyed('p1', 'P'), keyed('p2', 'P')])
    expect((await claim()).map((event) => event.eventId)).toEqual(['p1'])
    // The state such a claim leaves: the event in flight above a pending one of its key.
    await outbox.updateOne({ _id: 'p1' }, { $set: { keySeq: 3, rev: randomUUID() } })
    expect(await claim(), 'p1 is publishing: p2 waits although its keySeq is lower').toEqual([])
    clock.advance(lease.leaseMs)
    expect((await claim()).map((event) => event.eventId)).toEqual(['p1'])
  })
})
