import { EventNotFoundError, StorageError, ValidationError } from '@txbox/core'
import type { ChainableCommander } from 'ioredis'
import { describe, expect, it, vi } from 'vitest'
import { execTransaction } from '../src/index.js'
import { schemaKey, storeBase } from '../src/keys.js'
import { keysOf, outboxProblems, SKIP, SKIP_REASON, useStores } from './helpers.js'

const ev = (eventId: string, payload = 'p') => ({ eventId, subject: 'tx.test', payload })

describe.skipIf(SKIP)(`{ tx } = a MULTI (${SKIP ? SKIP_REASON : 'redis'})`, () => {
  const { redis, fresh } = useStores()

  it("enqueue joins the caller's MULTI: applied at exec with the caller's own write", async () => {
    const { store, keyPrefix } = await fresh()
    // The caller's key uses the store's hash tag, so the MULTI also works on a Cluster.
    const orderKey = `${storeBase(keyPrefix)}:order:1`
    const multi = redis.multi()
    multi.hset(orderKey, 'status', 'placed')
    const returned = await store.outbox.findOrCreate(ev('o-1'), { tx: multi })
    await store.outbox.findOrCreateMany([ev('o-2'), ev('o-3'), ev('o-2', 'ignored')], { tx: multi })
    expect(await store.outbox.get('o-1')).toBeNull()
    await execTransaction(multi)
    expect(await redis.hget(orderKey, 'status')).toBe('placed')
    expect(await store.outbox.get('o-1')).toEqual(returned)
    expect((await store.outbox.findPending()).map((e) => e.eventId)).toEqual(['o-1', 'o-2', 'o-3'])
    expect(await outboxProblems(redis, store)).toEqual([])
  })

  it('refuses a { tx } that is not a MULTI before any I/O: the write would not wait for exec', async () => {
    const { store, keyPrefix } = await fresh()
    const notMulti = redis as unknown as ChainableCommander
    for (const call of [
      () => store.outbox.findOrCreate(ev('direct'), { tx: notMulti }),
      () => store.outbox.findOrCreateMany([ev('direct')], { tx: notMulti }),
      () => store.inbox.markAsProcessed('direct', { tx: notMulti }),
    ]) {
      await expect(call()).rejects.toThrow(ValidationError)
      await expect(call()).rejects.toThrow(
        /^\[txbox\] \[redis\] \{ tx \} must be the ChainableCommander that redis\.multi\(\) returns/,
      )
    }
    expect(await keysOf(redis, keyPrefix)).toEqual([schemaKey(keyPrefix)])
  })

  it('refuses a MULTI of a client with another keyPrefix or database, before any I/O: its EXEC would write where the store never reads', async () => {
    const { store, keyPrefix } = await fresh()
    for (const [override, named] of [
      [
        { keyPrefix: 'app:' },
        /on database 0 with keyPrefix "app:", but the store's client writes to database 0:/,
      ],
      [{ db: 1 }, /on database 1, but the store's client writes to database 0:/],
    ] as const) {
      const other = redis.duplicate(override)
      try {
        const multi = other.multi()
        for (const call of [
          () => store.outbox.findOrCreate(ev('elsewhere'), { tx: multi }),
          () => store.outbox.findOrCreateMany([ev('elsewhere')], { tx: multi }),
          () => store.inbox.markAsProcessed('elsewhere', { tx: multi }),
        ])
          await expect(call()).rejects.toThrow(named)
        await expect(store.outbox.findOrCreate(ev('elsewhere'), { tx: multi })).rejects.toThrow(
          ValidationError,
        )
        expect(await execTransaction(multi)).toEqual([])
      } finally {
        await other.quit()
      }
    }
    expect(await keysOf(redis, keyPrefix)).toEqual([schemaKey(keyPrefix)])
  })

  it('a discarded MULTI leaves no trace at all', async () => {
    const { store, keyPrefix } = await fresh()
    const multi = redis.multi()
    await store.outbox.findOrCreate(ev('ghost'), { tx: multi })
    await store.outbox.findOrCreateMany([ev('ghost-2')], { tx: multi })
    multi.discard()
    expect(await keysOf(redis, keyPrefix)).toEqual([schemaKey(keyPrefix)])
  })

  it('with an id already stored, the stored event is returned and exec keeps it (first write wins)', async () => {
    const { store, clock } = await fresh()
    const first = await store.outbox.findOrCreate(ev('dup', 'first'))
    clock.advance(1000)
    const multi = redis.multi()
    const returned = await store.outbox.findOrCreate(ev('dup', 'second'), { tx: multi })
    const many = await store.outbox.findOrCreateMany([ev('dup', 'third'), ev('new', 'n')], { tx: multi })
    expect(returned).toEqual(first)
    expect(many[0]).toEqual(first)
    await execTransaction(multi)
    expect(await store.outbox.get('dup')).toEqual(first)
    expect((await store.outbox.get('new'))?.payload).toBe('n')
  })

  it('a batch in a MULTI reads its ids with one EXISTS when all are new, and returns the stored ones as stored', async () => {
    const { store, clock } = await fresh()
    const kept = await store.outbox.findOrCreate(ev('kept', 'first'))
    clock.advance(1000)
    const exists = vi.spyOn(redis, 'exists')
    const pipeline = vi.spyOn(redis, 'pipeline')
    try {
      const multi = redis.multi()
      const fresh3 = await store.outbox.findOrCreateMany([ev('n1'), ev('n2'), ev('n3')], { tx: multi })
      expect([exists.mock.calls.length, pipeline.mock.calls.length]).toEqual([1, 0])
      const mixed = await store.outbox.findOrCreateMany([ev('m1'), ev('kept', 'second'), ev('m2')], {
        tx: multi,
      })
      expect([exists.mock.calls.length, pipeline.mock.calls.length]).toEqual([2, 1])
      expect(mixed[1]).toEqual(kept)
      expect(mixed.map((e) => [e.eventId, e.payload, e.status])).toEqual([
        ['m1', 'p', 'pending'],
        ['kept', 'first', 'pending'],
        ['m2', 'p', 'pending'],
      ])
      await execTransaction(multi)
      for (const event of [...fresh3, mixed[0], mixed[2]])
        expect(await store.outbox.get(event!.eventId)).toEqual(event)
      expect(await store.outbox.get('kept')).toEqual(kept)
      expect(await outboxProblems(redis, store)).toEqual([])
    } finally {
      exists.mockRestore()
      pipeline.mockRestore()
    }
  })

  it('single-event enqueues of one tick send their reads as one pipeline, each answered with its own event or error', async () => {
    const { store, clock } = await fresh()
    const kept = await store.outbox.findOrCreate(ev('kept', 'first'))
    await redis.set(store.outbox.keys.event('foreign'), 'not a hash')
    clock.advance(1000)
    const multis = Array.from({ length: 4 }, () => redis.multi())
    const queued = () => multis.map((multi) => (multi as unknown as { length: number }).length)
    const before = queued()
    const pipeline = vi.spyOn(redis, 'pipeline')
    const hgetall = vi.spyOn(redis, 'hgetall')
    try {
      const [c1, stored, foreign, c2] = await Promise.allSettled([
        store.outbox.findOrCreate(ev('c1'), { tx: multis[0] }),
        store.outbox.findOrCreate(ev('kept', 'second'), { tx: multis[1] }),
        store.outbox.findOrCreate(ev('foreign'), { tx: multis[2] }),
        store.outbox.findOrCreate(ev('c2', 'two'), { tx: multis[3] }),
      ])
      expect([pipeline.mock.calls.length, hgetall.mock.calls.length]).toEqual([1, 0])
      expect(stored).toEqual({ status: 'fulfilled', value: kept })
      expect(foreign.status).toBe('rejected')
      expect((foreign as PromiseRejectedResult).reason).toBeInstanceOf(StorageError)
      expect((foreign as PromiseRejectedResult).reason.message).toMatch(/WRONGTYPE/)
      // The failed enqueue queued nothing; every other MULTI got its script.
      expect(queued().map((length, i) => length - (before[i] as number))).toEqual([1, 1, 0, 1])
      // A read alone in its tick is a plain HGETALL.
      await store.outbox.findOrCreate(ev('c3'), { tx: multis[0] })
      expect([pipeline.mock.calls.length, hgetall.mock.calls.length]).toEqual([1, 1])
      for (const multi of [multis[0], multis[1], multis[3]])
        await execTransaction(multi as ChainableCommander)
      multis[2]?.discard()
      expect(c1.status === 'fulfilled' && (await store.outbox.get('c1'))).toEqual(
        c1.status === 'fulfilled' && c1.value,
      )
      expect(c2.status === 'fulfilled' && (await store.outbox.get('c2'))).toEqual(
        c2.status === 'fulfilled' && c2.value,
      )
      expect(await store.outbox.get('kept')).toEqual(kept)
      expect((await store.outbox.get('c3'))?.status).toBe('pending')
    } finally {
      pipeline.mockRestore()
      hgetall.mockRestore()
    }
  })

  it('inbox markAsProcessed with tx: unknown id throws before exec; known id applies at exec', async () => {
    const { store } = await fresh()
    await store.inbox.claim({ eventId: 'm', subject: 's', payload: 'x' }, { leaseMs: 1000, workerId: 'w' })
    const multi = redis.multi()
    await expect(store.inbox.markAsProcessed('unknown', { tx: multi })).rejects.toBeInstanceOf(
      EventNotFoundError,
    )
    await store.inbox.markAsProcessed('m', { tx: multi })
    expect(await store.inbox.isProcessed('m')).toBe(false)
    await execTransaction(multi)
    expect(await store.inbox.isProcessed('m')).toBe(true)
    expect(await store.inbox.getCountByStatus()).toEqual({ processing: 0, processed: 1, failed: 0 })
  })

  it('execTransaction reports a partly applied MULTI (Redis has no rollback)', async () => {
    const { store, keyPrefix } = await fresh()
    const wrongType = `${storeBase(keyPrefix)}:not-a-number`
    await redis.hset(wrongType, 'f', 'v')
    const multi = redis.multi()
    await store.outbox.findOrCreate(ev('applied-anyway'), { tx: multi })
    multi.incr(wrongType)
    const error = await execTransaction(multi).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageError)
    expect((error as StorageError).message).toContain('1 of 2 queued commands failed')
    // The enqueue ran: EXEC does not undo the commands that succeeded.
    expect((await store.outbox.get('applied-anyway'))?.status).toBe('pending')
  })
})
