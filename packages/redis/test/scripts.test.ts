import { uniqueSuffix } from '@txbox/conformance'
import { EventNotFoundError, LeaseLostError } from '@txbox/core'
import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { LuaScript } from '../src/client.js'
import { createRedisStore, execTransaction } from '../src/index.js'
import { schemaKey } from '../src/keys.js'
import { SCHEMA_VERSION } from '../src/migrate.js'
import { OUTBOX_FIND_OR_CREATE } from '../src/scripts.js'
import {
  connect,
  inboxProblems,
  keysOf,
  outboxProblems,
  SKIP,
  SKIP_REASON,
  scanAll,
  useStores,
} from './helpers.js'

const LEASE = { leaseMs: 30_000, workerId: 'w1' }
const ev = (eventId: string, extra: { availableAt?: Date } = {}) => ({
  eventId,
  subject: 'lua.test',
  payload: `{"id":"${eventId}"}`,
  ...extra,
})
const inboxEv = (eventId: string, extra: { stream?: string; streamSeq?: number } = {}) => ({
  eventId,
  subject: 'lua.in',
  payload: eventId,
  ...extra,
})
const MINUTE = 60_000
const DAY = 86_400_000

describe.skipIf(SKIP)(`Lua scripts (${SKIP ? SKIP_REASON : 'redis'})`, () => {
  const { redis, fresh } = useStores()

  it('keeps the outbox counts hash and every index exact through every transition', async () => {
    const { store, clock } = await fresh()
    const { outbox } = store
    const check = async (step: string) => expect(await outboxProblems(redis, store), step).toEqual([])

    await outbox.findOrCreateMany(['a', 'b', 'c', 'd', 'e', 'f'].map((id) => ev(id)))
    await outbox.findOrCreate(ev('later', { availableAt: new Date(clock.peekMs() + 10 * MINUTE) }))
    await outbox.findOrCreate(ev('a'))
    await check('enqueued')
    const claimed = await outbox.claim({ ...LEASE, limit: 4 })
    expect(claimed.map((e) => e.eventId)).toEqual(['a', 'b', 'c', 'd'])
    await check('claimed')
    await outbox.markAsSent('a', { workerId: 'w1' })
    await expect(outbox.markAsSent('e', { workerId: 'w1' })).rejects.toBeInstanceOf(LeaseLostError)
    await outbox.markAsFailed('b', 'boom', { workerId: 'w1' })
    await outbox.retryLater('c', { errorMessage: 'later', delayMs: 5 * MINUTE, workerId: 'w1' })
    await outbox.retryLater('d', { errorMessage: 'now', delayMs: 0, workerId: 'w1' })
    await check('fenced writes')
    // A retry due at once is back in READY at its seq; a delayed one waits in DELAYED.
    expect(await redis.zscore(outbox.keys.ready, 'd')).not.toBeNull()
    expect(await redis.zscore(outbox.keys.delayed, 'd')).toBeNull()
    expect(await redis.zscore(outbox.keys.delayed, 'c')).not.toBeNull()
    expect(await outbox.markManyAsSent(['e', 'nope'], { workerId: 'w1' })).toEqual(['e', 'nope'])
    expect(await outbox.markManyAsSent(['e', 'e'])).toEqual([])
    await outbox.markAsPublishing('f')
    await outbox.markAsPublishing('a')
    await check('markAsPublishing / markManyAsSent')
    expect(await outbox.requeueFailed(['b', 'f'])).toBe(1)
    await check('requeue')
    clock.advance(6 * MINUTE)
    // c (retry due), b and d (due) are promoted/claimed in seq order; f/a have no lease.
    expect((await outbox.claim({ ...LEASE, workerId: 'w2', limit: 10 })).map((e) => e.eventId)).toEqual([
      'b',
      'c',
      'd',
    ])
    await check('promotion')
    clock.advance(MINUTE)
    // w2's leases expire: reclaimable, merged by seq with the now-due 'later'.
    clock.advance(30_000)
    clock.advance(5 * MINUTE)
    expect((await outbox.claim({ ...LEASE, workerId: 'w3', limit: 10 })).map((e) => e.eventId)).toEqual([
      'b',
      'c',
      'd',
      'later',
    ])
    await check('expired leases reclaimed')
    expect(await outbox.renewLease(['b', 'c', 'x'], { workerId: 'w3', leaseMs: 1000 })).toEqual(['b', 'c'])
    await check('renew')
    // Only a and f (markAsPublishing, 13 minutes ago) are stale; w3 claimed the rest just now.
    expect(await outbox.resetStale(1)).toBe(2)
    await check('resetStale')
    await outbox.markManyAsSent(['a', 'b', 'c', 'd', 'e', 'f', 'later'])
    await check('all sent')
    clock.advance(2 * DAY)
    expect(await outbox.cleanup(1)).toBe(7)
    await check('cleaned')
    expect(await outbox.getCountByStatus()).toEqual({ pending: 0, publishing: 0, sent: 0, failed: 0 })
  })

  it('claims and marks a batch larger than one slice of the batched index writes, every index and count exact', async () => {
    const { store, clock } = await fresh()
    const { outbox } = store
    // 1,200 events: 2,400 score-member values per index, three slices of call_batched.
    const ids = Array.from({ length: 1200 }, (_, index) => `big-${String(index).padStart(4, '0')}`)
    for (let start = 0; start < ids.length; start += 500)
      await outbox.findOrCreateMany(ids.slice(start, start + 500).map((id) => ev(id)))
    const claimed = await outbox.claim({ ...LEASE, limit: 1200 })
    expect(claimed.map((e) => e.eventId)).toEqual(ids)
    expect(await outboxProblems(redis, store), 'claimed').toEqual([])
    expect(await outbox.getCountByStatus()).toEqual({ pending: 0, publishing: 1200, sent: 0, failed: 0 })
    expect(await outbox.markManyAsSent([...ids, 'missing'], { workerId: 'w1' })).toEqual(['missing'])
    expect(await outboxProblems(redis, store), 'sent').toEqual([])
    expect(await outbox.getCountByStatus()).toEqual({ pending: 0, publishing: 0, sent: 1200, failed: 0 })
    // Nothing of the leases or claims is left to take the sent events back.
    clock.advance(LEASE.leaseMs + 10 * MINUTE)
    expect(await outbox.claim({ ...LEASE, workerId: 'w2', limit: 10 })).toEqual([])
    expect(await outbox.resetStale(1)).toBe(0)
  })

  it('marks sent, unfenced, events of every status in one batch with every index and count exact', async () => {
    const { store, clock } = await fresh()
    const { outbox } = store
    await outbox.findOrCreateMany(['pub', 'fail', 'done', 'due'].map((id) => ev(id)))
    await outbox.findOrCreate(ev('delayed', { availableAt: new Date(clock.peekMs() + MINUTE) }))
    await outbox.claim({ ...LEASE, limit: 3 })
    await outbox.markAsFailed('fail', 'boom', { workerId: 'w1' })
    await outbox.markAsSent('done', { workerId: 'w1' })
    clock.advance(1000)
    const ids = ['pub', 'fail', 'done', 'due', 'delayed']
    expect(await outbox.markManyAsSent([...ids, 'missing'])).toEqual(['missing'])
    expect(await outboxProblems(redis, store)).toEqual([])
    expect(await outbox.getCountByStatus()).toEqual({ pending: 0, publishing: 0, sent: 5, failed: 0 })
    for (const id of ids) expect((await outbox.get(id))?.sentAt?.getTime(), id).toBe(clock.peekMs())
  })

  it('keeps the inbox counts hash and indexes exact through every transition, and writes no alias', async () => {
    const { store, clock } = await fresh()
    const { inbox } = store
    const check = async (step: string) => expect(await inboxProblems(redis, store), step).toEqual([])
    await inbox.findOrCreate(inboxEv('i1', { stream: 'S', streamSeq: 1 }))
    // A redelivery at another stream position (JetStream redelivers under the same id).
    await inbox.findOrCreate(inboxEv('i1', { stream: 'S', streamSeq: 2 }))
    await inbox.claim(inboxEv('i2'), LEASE)
    await inbox.claim(inboxEv('i3'), LEASE)
    await check('created')
    await inbox.markAsFailed('i2', 'x')
    expect((await inbox.claim(inboxEv('i2'), LEASE)).shouldProcess).toBe(true)
    await inbox.markAsProcessed('i3')
    await check('transitions')
    clock.advance(10 * MINUTE)
    expect(await inbox.resetStale(5)).toBe(2)
    await check('reset')
    await inbox.markAsProcessed('i1')
    await inbox.markAsProcessed('i2')
    clock.advance(2 * DAY)
    expect(await inbox.cleanup(1)).toBe(3)
    await check('cleaned')
    expect(await inbox.getCountByStatus()).toEqual({ processing: 0, processed: 0, failed: 0 })
  })

  it('cleanup of everything leaves no per-event key, index, alias or counts behind', async () => {
    const { store, keyPrefix, clock } = await fresh()
    const ids = Array.from({ length: 2500 }, (_, i) => `k${i}`)
    await store.outbox.findOrCreateMany(ids.map((id) => ev(id)))
    await store.outbox.findOrCreate(ev('delayed', { availableAt: new Date(clock.peekMs() + MINUTE) }))
    await store.outbox.claim({ ...LEASE, limit: 100 })
    await store.outbox.markAsFailed('k5', 'dead')
    await store.outbox.requeueFailed(['k5'])
    clock.advance(2 * MINUTE)
    await store.outbox.markManyAsSent([...ids, 'delayed'])
    for (let i = 0; i < 30; i++)
      await store.inbox.claim(inboxEv(`m${i}`, { stream: 'ORDERS', streamSeq: i + 1 }), LEASE)
    for (let i = 0; i < 30; i++) await store.inbox.markAsProcessed(`m${i}`)
    expect((await keysOf(redis, keyPrefix)).length).toBeGreaterThan(2500)
    clock.advance(DAY + 1)
    // 2501 > one batch of 1000: cleanup loops over bounded batches.
    expect(await store.outbox.cleanup(1)).toBe(2501)
    expect(await store.inbox.cleanup(1)).toBe(30)
    // What stays is constant-size: the two sequences (ordering must survive) and the schema version.
    expect(await keysOf(redis, keyPrefix)).toEqual(
      [store.inbox.keys.seq, store.outbox.keys.seq, schemaKey(keyPrefix)].sort(),
    )
  })

  it('falls back to EVAL after SCRIPT FLUSH (NOSCRIPT), also for a MULTI', async () => {
    const { store } = await fresh()
    // A script text no other test file can load meanwhile (test files run in parallel).
    const script = new LuaScript(`${OUTBOX_FIND_OR_CREATE}\n-- ${uniqueSuffix()}`)
    const call = (id: string) =>
      script.run(
        redis,
        [...store.outbox.keys.indexKeys, store.outbox.keys.event(id)],
        [1 /* now */, id, 's', 'p', '0', '', 1 /* availableAt */, '' /* no orderingKey */],
      )
    expect(await redis.script('EXISTS', script.sha)).toEqual([0])
    expect(await call('n0')).toEqual([expect.any(Number)])
    expect(await redis.script('EXISTS', script.sha)).toEqual([1])
    await redis.script('FLUSH')
    expect(await redis.script('EXISTS', script.sha)).toEqual([0])
    expect(await call('n1')).toEqual([expect.any(Number)])
    expect(await redis.script('EXISTS', script.sha)).toEqual([1])
    // The repository's own scripts after a flush, directly and queued into a MULTI.
    await redis.script('FLUSH')
    expect((await store.outbox.claim(LEASE)).map((e) => e.eventId)).toEqual(['n0', 'n1'])
    await redis.script('FLUSH')
    const multi = redis.multi()
    await store.outbox.findOrCreate(ev('n2'), { tx: multi })
    const results = await multi.exec()
    expect(results?.every(([error]) => error === null)).toBe(true)
    expect((await store.outbox.get('n2'))?.status).toBe('pending')
  })

  it('findPending writes nothing: delayed events that became due stay where they are until a claim', async () => {
    const { store, clock } = await fresh()
    const t0 = clock.peekMs()
    await store.outbox.findOrCreate(ev('late', { availableAt: new Date(t0 + 2000) }))
    await store.outbox.findOrCreate(ev('soon', { availableAt: new Date(t0 + 1000) }))
    await store.outbox.findOrCreate(ev('now'))
    clock.advance(5000)
    const snapshot = async () =>
      Promise.all(
        [store.outbox.keys.ready, store.outbox.keys.delayed].map((key) =>
          redis.zrange(key, 0, -1, 'WITHSCORES'),
        ),
      )
    const before = await snapshot()
    // Enqueue order (seq), not availableAt order and not member-name order.
    expect((await store.outbox.findPending()).map((e) => e.eventId)).toEqual(['late', 'soon', 'now'])
    expect(await snapshot()).toEqual(before)
    expect((await store.outbox.claim({ ...LEASE, limit: 2 })).map((e) => e.eventId)).toEqual(['late', 'soon'])
    expect((await store.outbox.findPending()).map((e) => e.eventId)).toEqual(['now'])
  })

  it('orders by the INCR sequence with a frozen clock, not by member name', async () => {
    const { store } = await fresh()
    const ids = ['z', 'a', 'm', '0', 'b']
    for (const id of ids) await store.outbox.findOrCreate(ev(id))
    expect((await store.outbox.findPending()).map((e) => e.eventId)).toEqual(ids)
    expect((await store.outbox.claim(LEASE)).map((e) => e.eventId)).toEqual(ids)
  })

  it('inbox: a new id at a stored (stream, streamSeq) is a new event; a version 1 alias is ignored and cleaned up', async () => {
    const { store, clock, keyPrefix } = await fresh()
    const first = await store.inbox.claim(inboxEv('orig', { stream: 'S', streamSeq: 7 }), LEASE)
    // What version 1 wrote beside it: the alias of S/7, and the schema version.
    const alias = `${store.inbox.keys.aliasPrefix}7:S`
    await redis.set(alias, 'orig')
    await redis.set(schemaKey(keyPrefix), '1')
    await store.migrate()
    expect(await redis.get(schemaKey(keyPrefix))).toBe(SCHEMA_VERSION)
    const reused = await store.inbox.claim(inboxEv('other-id', { stream: 'S', streamSeq: 7 }), LEASE)
    expect(first.shouldProcess).toBe(true)
    expect(reused).toMatchObject({ shouldProcess: true, event: { eventId: 'other-id', deliveries: 1 } })
    expect(await store.inbox.get('other-id')).toMatchObject({ stream: 'S', streamSeq: 7, deliveries: 1 })
    const moved = await store.inbox.findOrCreate(inboxEv('orig', { stream: 'S', streamSeq: 9 }))
    expect(moved).toMatchObject({ eventId: 'orig', deliveries: 2, streamSeq: 7 })
    await store.inbox.markAsProcessed('orig')
    await store.inbox.markAsProcessed('other-id')
    clock.advance(2 * DAY)
    expect(await store.inbox.cleanup(1)).toBe(2)
    expect(await redis.exists(alias)).toBe(0)
    expect(await inboxProblems(redis, store)).toEqual([])
    await expect(store.inbox.markAsProcessed('orig')).rejects.toBeInstanceOf(EventNotFoundError)
  })

  it('inbox getFailedEvents orders by receivedAt, then seq (not member name)', async () => {
    const { store, clock } = await fresh()
    for (const id of ['zz', 'aa']) await store.inbox.findOrCreate(inboxEv(id))
    clock.advance(-1000)
    await store.inbox.findOrCreate(inboxEv('early'))
    for (const id of ['zz', 'aa', 'early']) await store.inbox.markAsFailed(id, 'x')
    expect((await store.inbox.getFailedEvents()).map((e) => e.eventId)).toEqual(['early', 'zz', 'aa'])
  })

  it('honours an ioredis keyPrefix option, also for keys the scripts build and for a MULTI', async () => {
    const prefixed = new Redis(process.env.TXBOX_REDIS_URL!, { keyPrefix: 'app:' })
    const keyPrefix = `t_${uniqueSuffix()}`
    try {
      const store = createRedisStore({ redis: prefixed, keyPrefix })
      await store.outbox.findOrCreate(ev('a'))
      const multi = prefixed.multi()
      await store.outbox.findOrCreate(ev('b'), { tx: multi })
      await execTransaction(multi)
      expect((await store.outbox.claim(LEASE)).map((e) => e.eventId)).toEqual(['a', 'b'])
      expect(await keysOf(redis, keyPrefix)).toEqual([])
      const keys = await scanAll(redis, `app:txbox:{${keyPrefix}}:*`)
      expect(keys).toContain(`app:${store.outbox.keys.event('a')}`)
      expect(keys).toContain(`app:${store.outbox.keys.leases}`)
      await redis.unlink(...keys)
    } finally {
      prefixed.disconnect()
    }
  })

  it('migrate() run concurrently from many clients succeeds and is idempotent', async () => {
    const { store, keyPrefix } = await fresh()
    const others = Array.from({ length: 4 }, () => connect())
    try {
      await Promise.all([
        store.migrate(),
        store.migrate(),
        ...others.map((c) => newStoreMigrate(c, keyPrefix)),
      ])
      expect(await redis.get(schemaKey(keyPrefix))).toBe(SCHEMA_VERSION)
    } finally {
      await Promise.all(others.map((c) => c.quit()))
    }
  })
})

const newStoreMigrate = async (redis: Redis, keyPrefix: string) => {
  const { createRedisStore } = await import('../src/index.js')
  await createRedisStore({ redis, keyPrefix }).migrate()
}
