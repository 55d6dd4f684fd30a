import { createMemoryStore, ManualClock, type OutboxEvent, type OutboxRepository } from '@txbox/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRedisStore } from '../src/index.js'
import { connect, outboxProblems, SKIP, SKIP_REASON, useStores } from './helpers.js'

const keyed = (eventId: string, orderingKey: string, extra: { availableAt?: Date } = {}) => ({
  eventId,
  subject: 'orders.changed',
  payload: JSON.stringify({ eventId }),
  orderingKey,
  ...extra,
})
const plain = (eventId: string) => ({ eventId, subject: 'orders.changed', payload: '{}' })
const LEASE = { leaseMs: 60_000, workerId: 'w', limit: 100 } as const
const ids = (events: readonly OutboxEvent[]) => events.map((e) => e.eventId)

describe.skipIf(SKIP)(`redis ordering keys (${SKIP ? SKIP_REASON : 'redis'})`, () => {
  const { redis, fresh } = useStores()

  it('takes keySeq when the write executes: outside a MULTI the answer has it, inside a MULTI it comes at EXEC, in EXEC order', async () => {
    const { store } = await fresh()
    expect(await store.outbox.findOrCreate(keyed('a1', 'A'))).toMatchObject({ orderingKey: 'A', keySeq: 1 })
    const first = redis.multi()
    const second = redis.multi()
    const queuedFirst = await store.outbox.findOrCreate(keyed('a2', 'A'), { tx: first })
    const queuedSecond = await store.outbox.findOrCreateMany([keyed('a3', 'A'), keyed('a4', 'A')], {
      tx: second,
    })
    for (const provisional of [queuedFirst, ...queuedSecond]) {
      expect(provisional.orderingKey).toBe('A')
      expect(provisional).not.toHaveProperty('keySeq')
    }
    // The MULTI queued second executes first: its events come first in the key.
    await second.exec()
    await first.exec()
    const stored = await Promise.all(['a2', 'a3', 'a4'].map((id) => store.outbox.get(id)))
    expect(stored.map((e) => [e?.eventId, e?.keySeq])).toEqual([
      ['a2', 4],
      ['a3', 2],
      ['a4', 3],
    ])
    // A duplicate id answers the stored event and takes nothing from the counter.
    expect(await store.outbox.findOrCreate({ ...keyed('a1', 'A'), payload: 'other' })).toEqual(
      await store.outbox.get('a1'),
    )
    expect((await store.outbox.findOrCreate(keyed('a5', 'A'))).keySeq).toBe(5)
    expect(await outboxProblems(redis, store)).toEqual([])
  })

  it('keeps the per-key counter after cleanup deleted every event of the key, and leaves no per-key set behind', async () => {
    const { store, clock } = await fresh()
    await store.outbox.findOrCreateMany([keyed('k1', 'K'), keyed('k2', 'K'), plain('u')])
    for (let round = 0; round < 3; round++) {
      const batch = await store.outbox.claim(LEASE)
      expect(await store.outbox.markManyAsSent(ids(batch), { workerId: 'w' })).toEqual([])
    }
    clock.advance(2 * 86_400_000)
    expect(await store.outbox.cleanup(1)).toBe(3)
    const k = store.outbox.keys
    expect(await redis.exists(`${k.livePrefix}K`, `${k.deadPrefix}K`, k.blocked, k.parked)).toBe(0)
    expect(await redis.hget(k.keySeqs, 'K')).toBe('2')
    expect((await store.outbox.findOrCreate(keyed('k3', 'K'))).keySeq).toBe(3)
  })

  it('files a key backlog out of the claim index: a claim reads only heads, findPending still lists every due event', async () => {
    const { store, clock } = await fresh()
    const backlog = Array.from({ length: 300 }, (_, i) => keyed(`b${i}`, 'busy'))
    await store.outbox.findOrCreateMany([...backlog, plain('u1'), keyed('q1', 'quiet')])
    await store.outbox.findOrCreate(keyed('later', 'late', { availableAt: new Date(clock.peekMs() + 1000) }))
    const k = store.outbox.keys
    expect(await redis.zrange(k.ready, 0, -1)).toEqual(['b0', 'u1', 'q1'])
    expect(await redis.zcard(k.parked)).toBe(299)
    expect(ids(await store.outbox.findPending({ limit: 5 }))).toEqual(['b0', 'b1', 'b2', 'b3', 'b4'])
    expect(ids(await store.outbox.claim(LEASE))).toEqual(['b0', 'u1', 'q1'])
    expect(ids(await store.outbox.findPending({ limit: 2 }))).toEqual(['b1', 'b2'])
    await store.outbox.markAsFailed('b0', 'dead', { workerId: 'w' })
    // b1, the new head, waits behind the dead letter for a 'block' claim, not for a 'skip' one.
    expect(await redis.zrange(k.blocked, 0, -1)).toEqual(['b1'])
    expect(await store.outbox.claim(LEASE)).toEqual([])
    clock.advance(1000)
    expect(ids(await store.outbox.claim({ ...LEASE, keyedDeadLetters: 'skip' }))).toEqual(['b1', 'later'])
    expect(await outboxProblems(redis, store)).toEqual([])
  })

  it('parks the head a redriven dead letter below it displaces, so no claim takes both', async () => {
    const { store } = await fresh()
    await store.outbox.findOrCreateMany([keyed('d1', 'D'), keyed('d2', 'D'), keyed('d3', 'D')])
    expect(ids(await store.outbox.claim(LEASE))).toEqual(['d1'])
    await store.outbox.markAsFailed('d1', 'dead', { workerId: 'w' })
    expect(await redis.zrange(store.outbox.keys.blocked, 0, -1)).toEqual(['d2'])
    expect(await store.outbox.requeueFailed(['d1'])).toBe(1)
    expect(await redis.zrange(store.outbox.keys.parked, 0, -1)).toEqual(['d2', 'd3'])
    expect(ids(await store.outbox.claim({ ...LEASE, keyedDeadLetters: 'skip' }))).toEqual(['d1'])
    // A retry of d1 with its backoff keeps it the head: d2 stays parked.
    await store.outbox.retryLater('d1', { errorMessage: 'again', delayMs: 0, workerId: 'w' })
    expect(ids(await store.outbox.claim({ ...LEASE, keyedDeadLetters: 'skip' }))).toEqual(['d1'])
    expect(await outboxProblems(redis, store)).toEqual([])
  })

  it("pins a publishing event ahead of a dead letter redriven below it, and gives back that event when its lease expires, for 'block' too", async () => {
    const { store, clock } = await fresh()
    const skip = { ...LEASE, keyedDeadLetters: 'skip' } as const
    await store.outbox.findOrCreateMany([keyed('p1', 'P'), keyed('p2', 'P'), keyed('p3', 'P')])
    expect(ids(await store.outbox.claim(skip))).toEqual(['p1'])
    await store.outbox.markAsFailed('p1', 'dead', { workerId: 'w' })
    expect(ids(await store.outbox.claim(skip))).toEqual(['p2'])
    clock.advance(LEASE.leaseMs)
    // p2 went past the dead letter p1 under 'skip': a 'block' claim takes it again, never p3.
    expect(ids(await store.outbox.claim(LEASE))).toEqual(['p2'])
    expect(await store.outbox.requeueFailed(['p1'])).toBe(1)
    const live = `${store.outbox.keys.livePrefix}P`
    expect(await redis.zrange(live, 0, -1, 'WITHSCORES')).toEqual([
      'p2',
      String(2 - 2 ** 53),
      'p1',
      '1',
      'p3',
      '3',
    ])
    expect(await redis.zrange(store.outbox.keys.parked, 0, -1)).toEqual(['p1', 'p3'])
    expect(await store.outbox.claim(skip)).toEqual([])
    clock.advance(LEASE.leaseMs)
    expect(ids(await store.outbox.claim(LEASE))).toEqual(['p2'])
    await store.outbox.retryLater('p2', { errorMessage: 'again', delayMs: 0, workerId: 'w' })
    // Back to pending, p2 is unpinned: the lowest keySeq, the redriven p1, is the head again.
    expect(await redis.zrange(live, 0, -1, 'WITHSCORES')).toEqual(['p1', '1', 'p2', '2', 'p3', '3'])
    expect(ids(await store.outbox.claim(LEASE))).toEqual(['p1'])
    expect(await outboxProblems(redis, store)).toEqual([])
  })

  it('stores keys with braces, colons and any script exactly, apart from each other', async () => {
    const { store } = await fresh()
    const names = ['{other}', 'a:b', 'A:b', 'ключ🙂', `${'x'.repeat(254)}}`]
    await store.outbox.findOrCreateMany(names.map((name, i) => keyed(`n${i}`, name)))
    await store.outbox.findOrCreateMany(names.map((name, i) => keyed(`m${i}`, name)))
    const claimed = await store.outbox.claim(LEASE)
    expect(claimed.map((e) => [e.orderingKey, e.keySeq])).toEqual(names.map((name) => [name, 1]))
    expect(await outboxProblems(redis, store)).toEqual([])
  })

  it('matches the memory reference store step by step over random enqueues, claims, marks, retries, redrives and time', async () => {
    for (const seed of [1, 2, 3]) {
      const clock = new ManualClock()
      const { store } = await fresh(clock)
      const reference = createMemoryStore({ clock: clock.now })
      await differential(seed, clock, store.outbox, reference.outbox, async (step) => {
        const problems = await outboxProblems(redis, store)
        expect(problems, `seed ${seed}, after step ${step}`).toEqual([])
      })
    }
  })
})

describe.skipIf(SKIP)(`redis ordering keys: claimers racing (${SKIP ? SKIP_REASON : 'redis'})`, () => {
  const CLAIMERS = 6
  const KEYS = 40
  const PER_KEY = 12
  const { redis, fresh } = useStores()
  const connections = Array.from({ length: CLAIMERS }, () => ({
    current: undefined as ReturnType<typeof connect> | undefined,
  }))
  beforeAll(() => {
    for (const connection of connections) connection.current = connect()
  })
  afterAll(async () => {
    await Promise.all(connections.map((connection) => connection.current?.quit()))
  })

  it(`${CLAIMERS} claimers on separate connections never hold two events of one key, and send each key in keySeq order`, async () => {
    const clock = new ManualClock()
    const { store, keyPrefix } = await fresh(clock)
    for (let round = 0; round < PER_KEY; round++)
      await store.outbox.findOrCreateMany([
        ...Array.from({ length: KEYS }, (_, key) => keyed(`k${key}-${round}`, `key-${key}`)),
        plain(`u-${round}`),
      ])
    const holding = new Map<string, string>()
    const sent = new Map<string, number[]>()
    let unkeyed = 0
    await Promise.all(
      connections.map(async (connection, index) => {
        const outbox = createRedisStore({ redis: connection.current!, keyPrefix, clock: clock.now }).outbox
        const workerId = `w${index}`
        for (let idle = 0; idle < 3; ) {
          const batch = await outbox.claim({ limit: 1 + (index % 4) * 3, leaseMs: 600_000, workerId })
          idle = batch.length === 0 ? idle + 1 : 0
          for (const event of batch) {
            if (event.orderingKey === undefined) continue
            expect(
              holding.get(event.orderingKey),
              `${event.eventId} claimed while its key is held`,
            ).toBeUndefined()
            holding.set(event.orderingKey, event.eventId)
          }
          // Yield so that the other claimers run while these are held.
          await new Promise((resolve) => setImmediate(resolve))
          for (const event of batch) {
            if (event.orderingKey === undefined) {
              unkeyed++
            } else {
              holding.delete(event.orderingKey)
              sent.set(event.orderingKey, [...(sent.get(event.orderingKey) ?? []), event.keySeq as number])
            }
          }
          // Marked after the key is released in our books: a claim racing this mark may not take
          // the next event before the mark lands, which the store's ordering guarantees.
          expect(await outbox.markManyAsSent(ids(batch), { workerId })).toEqual([])
        }
      }),
    )
    expect(unkeyed).toBe(PER_KEY)
    expect(sent.size).toBe(KEYS)
    for (const keySeqs of sent.values())
      expect(keySeqs).toEqual(Array.from({ length: PER_KEY }, (_, i) => i + 1))
    expect(await store.outbox.getCountByStatus()).toEqual({
      pending: 0,
      publishing: 0,
      sent: KEYS * PER_KEY + PER_KEY,
      failed: 0,
    })
    expect(await outboxProblems(redis, store)).toEqual([])
  })
})

/** A small deterministic PRNG (mulberry32), so a failing seed replays. */
const random = (seed: number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

/**
 * Runs the same random operations on `subject` and `reference` and expects the same answers
 * (results, errors' kinds, counts, and every event as stored), checking `invariants` after
 * each step.
 */
const differential = async (
  seed: number,
  clock: ManualClock,
  subject: OutboxRepository,
  reference: OutboxRepository,
  invariants: (step: number) => Promise<void>,
): Promise<void> => {
  const next = random(seed)
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)] as T
  const keys = ['A', 'B', 'C', 'a']
  const known: string[] = []
  const workers = ['w1', 'w2']
  // What the last claim handed out: marking it sent is the relay's usual step (each event its
  // key's publishing head, alone of its key), the markManyAsSent script's fast way.
  let lastClaim: { ids: string[]; workerId: string } = { ids: [], workerId: 'w1' }
  let claiming: string | undefined
  const settle = async <T>(call: (outbox: OutboxRepository) => Promise<T>): Promise<unknown> =>
    call(subject).then(
      (value) => ({ value }),
      (error: unknown) => ({ error: (error as Error).name }),
    )
  for (let step = 0; step < 250; step++) {
    const roll = next()
    let run: (outbox: OutboxRepository) => Promise<unknown>
    let label: string
    if (roll < 0.25) {
      const count = 1 + Math.floor(next() * 4)
      const events = Array.from({ length: count }, () => {
        const id =
          next() < 0.1 && known.length > 0 ? pick(known) : `e${known.length}-${Math.floor(next() * 1e6)}`
        if (!known.includes(id)) known.push(id)
        const delayed =
          next() < 0.2 ? { availableAt: new Date(clock.peekMs() + Math.floor(next() * 3) * 1000) } : {}
        return next() < 0.8 ? keyed(id, pick(keys), delayed) : { ...plain(id), ...delayed }
      })
      const unique = [...new Map(events.map((event) => [event.eventId, event])).values()]
      label = `enqueue ${unique.map((e) => e.eventId).join(',')}`
      run = (outbox) => outbox.findOrCreateMany(unique)
    } else if (roll < 0.5) {
      const options = {
        limit: 1 + Math.floor(next() * 5),
        leaseMs: 2000,
        workerId: pick(workers),
        keyedDeadLetters: pick(['block', 'skip'] as const),
      }
      label = `claim ${JSON.stringify(options)}`
      claiming = options.workerId
      run = (outbox) => outbox.claim(options)
    } else if (known.length === 0) {
      continue
    } else if (roll < 0.62) {
      const id = pick(known)
      const fenced = next() < 0.7 ? { workerId: pick(workers) } : undefined
      label = `markAsSent ${id} ${JSON.stringify(fenced)}`
      run = (outbox) => outbox.markAsSent(id, fenced)
    } else if (roll < 0.68) {
      // Else any ids, a repeat or two of one key among them, fenced or not: the general way.
      const claimed = next() < 0.6 && lastClaim.ids.length > 0
      const list = claimed ? lastClaim.ids : [pick(known), pick(known), pick(known)]
      const fenced = claimed
        ? { workerId: lastClaim.workerId }
        : next() < 0.7
          ? { workerId: pick(workers) }
          : undefined
      label = `markManyAsSent ${list} ${JSON.stringify(fenced)}`
      run = (outbox) => outbox.markManyAsSent(list, fenced)
    } else if (roll < 0.76) {
      const id = pick(known)
      const fenced = next() < 0.7 ? { workerId: pick(workers) } : undefined
      label = `markAsFailed ${id}`
      run = (outbox) => outbox.markAsFailed(id, 'dead', fenced)
    } else if (roll < 0.84) {
      const id = pick(known)
      const options = {
        errorMessage: 'again',
        delayMs: Math.floor(next() * 3) * 1000,
        workerId: pick(workers),
      }
      label = `retryLater ${id} ${JSON.stringify(options)}`
      run = (outbox) => outbox.retryLater(id, options)
    } else if (roll < 0.88) {
      const id = pick(known)
      label = `requeueFailed ${id}`
      run = (outbox) => outbox.requeueFailed([id])
    } else if (roll < 0.9) {
      label = 'resetStale'
      run = (outbox) => outbox.resetStale(0)
    } else if (roll < 0.92) {
      const id = pick(known)
      label = `markAsPublishing ${id}`
      run = (outbox) => outbox.markAsPublishing(id)
    } else if (roll < 0.94) {
      label = 'findPending'
      run = (outbox) => outbox.findPending({ limit: 50 })
    } else {
      clock.advance(pick([500, 1000, 2500]))
      continue
    }
    const got = await settle(run)
    if (claiming !== undefined && 'value' in (got as object)) {
      lastClaim = {
        ids: ((got as { value: OutboxEvent[] }).value ?? []).map((e) => e.eventId),
        workerId: claiming,
      }
    }
    claiming = undefined
    const expected = await run(reference).then(
      (value) => ({ value }),
      (error: unknown) => ({ error: (error as Error).name }),
    )
    expect(got, `seed ${seed} step ${step}: ${label}`).toEqual(expected)
    expect(await subject.getCountByStatus(), `seed ${seed} step ${step}: counts after ${label}`).toEqual(
      await reference.getCountByStatus(),
    )
    // Read together (one pipeline of HGETALLs), compared one by one.
    const stored = await Promise.all(known.map((id) => subject.get(id)))
    for (const [index, id] of known.entries())
      expect(stored[index], `seed ${seed} step ${step}: ${id} after ${label}`).toEqual(
        await reference.get(id),
      )
    if (step % 25 === 24) await invariants(step)
  }
}
