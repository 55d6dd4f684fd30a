import { uniqueSuffix } from '@txbox/conformance'
import { ManualClock, StorageError } from '@txbox/core'
import { Cluster } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { createRedisStore } from '../src/index.js'
import { schemaKey, storeBase } from '../src/keys.js'
import { connect, keysOf, outboxProblems, SKIP, SKIP_REASON, useStores } from './helpers.js'

const ev = (eventId: string, payload = 'p') => ({ eventId, subject: 'tx.test', payload })

/** A business write in Lua: takes `qty` from the stock, or answers -1 when there is not enough (no error). */
const RESERVE = `
local stock = tonumber(redis.call('HGET', KEYS[1], 'stock') or '0')
local qty = tonumber(ARGV[1])
if stock < qty then return -1 end
return redis.call('HINCRBY', KEYS[1], 'stock', -qty)
`

describe.skipIf(SKIP)(`store.transaction = MULTI ... EXEC (${SKIP ? SKIP_REASON : 'redis'})`, () => {
  const { redis, fresh } = useStores()

  it('applies the business write and the enqueue together at EXEC, and sends nothing when fn throws', async () => {
    const { store, keyPrefix } = await fresh()
    // Keys under the store's hash tag, so the same MULTI also works on a Redis Cluster.
    const orderKey = `${storeBase(keyPrefix)}:order:1`
    const result = await store.transaction(async (multi, { attempt }) => {
      multi.hset(orderKey, 'status', 'placed')
      await store.outbox.findOrCreate(ev('o-1'))
      await store.outbox.findOrCreateMany([ev('o-2')])
      // Queued, not applied: nothing is visible before EXEC.
      expect(await redis.exists(orderKey)).toBe(0)
      expect(await store.outbox.get('o-1')).toBeNull()
      return attempt
    })
    expect(result).toBe(1)
    expect(await redis.hget(orderKey, 'status')).toBe('placed')
    expect((await store.outbox.findPending()).map((e) => e.eventId)).toEqual(['o-1', 'o-2'])
    expect(await outboxProblems(redis, store)).toEqual([])

    const before = await keysOf(redis, keyPrefix)
    await expect(
      store.transaction(async (multi) => {
        multi.hset(`${storeBase(keyPrefix)}:order:2`, 'status', 'placed')
        await store.outbox.findOrCreate(ev('o-3'))
        throw new Error('declined')
      }),
    ).rejects.toThrow('declined')
    expect(await keysOf(redis, keyPrefix)).toEqual(before)
    expect(await store.outbox.get('o-3')).toBeNull()
  })

  it('lets an explicit { tx } win and nested calls join the same MULTI', async () => {
    const { store } = await fresh()
    const mine = redis.multi()
    await store.transaction(async (multi) => {
      await store.outbox.findOrCreate(ev('explicit'), { tx: mine })
      await store.transaction(async (inner) => {
        expect(inner).toBe(multi)
        await store.outbox.findOrCreate(ev('nested'))
      })
    })
    expect(await store.outbox.get('explicit')).toBeNull()
    expect(await store.outbox.get('nested')).toMatchObject({ status: 'pending' })
    mine.discard()
  })

  it('queues a Lua business script into the MULTI with the enqueue: both at EXEC, or neither', async () => {
    const { store, keyPrefix } = await fresh()
    const stockKey = `${storeBase(keyPrefix)}:stock:sku-1`
    await redis.hset(stockKey, 'stock', 5)
    await store.transaction(async (multi) => {
      multi.eval(RESERVE, 1, stockKey, 2)
      await store.outbox.findOrCreate(ev('reserved-1'))
    })
    expect(await redis.hget(stockKey, 'stock')).toBe('3')
    expect(await store.outbox.get('reserved-1')).toMatchObject({ status: 'pending' })
    await expect(
      store.transaction(async (multi) => {
        multi.eval(RESERVE, 1, stockKey, 2)
        await store.outbox.findOrCreate(ev('reserved-2'))
        throw new Error('payment declined')
      }),
    ).rejects.toThrow('payment declined')
    expect(await redis.hget(stockKey, 'stock')).toBe('3')
    expect(await store.outbox.get('reserved-2')).toBeNull()
  })

  it('reports a script that errors inside EXEC: Redis has no rollback, the enqueue is applied anyway', async () => {
    const { store, keyPrefix } = await fresh()
    const error = await store
      .transaction(async (multi) => {
        multi.eval("return redis.error_reply('out of stock')", 1, `${storeBase(keyPrefix)}:stock:x`)
        await store.outbox.findOrCreate(ev('applied-anyway'))
      })
      .catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(StorageError)
    expect((error as StorageError).message).toMatch(/1 of 2 queued commands failed; the others were applied/)
    expect(await store.outbox.get('applied-anyway')).toMatchObject({ status: 'pending' })
  })

  it('retries the whole function when a WATCHed key changed (EXEC aborted by another connection)', async () => {
    const { keyPrefix } = await fresh()
    // WATCH belongs to a connection: the store gets one of its own.
    const own = connect()
    const other = connect()
    try {
      const store = createRedisStore({ redis: own, keyPrefix, clock: new ManualClock().now })
      const stockKey = `${storeBase(keyPrefix)}:stock:sku-2`
      await redis.hset(stockKey, 'stock', 5)
      const attempts: number[] = []
      const reserve = (retries: number, changeOnAttempts: number[]) =>
        store.transaction(
          async (multi, { attempt }) => {
            attempts.push(attempt)
            await own.watch(stockKey)
            const stock = Number(await own.hget(stockKey, 'stock'))
            if (changeOnAttempts.includes(attempt)) await other.hincrby(stockKey, 'stock', -1)
            multi.hset(stockKey, 'stock', stock - 1)
            await store.outbox.findOrCreate(ev(`reserved-at-${stock}`))
          },
          { retries },
        )
      await reserve(1, [1])
      expect(attempts).toEqual([1, 2])
      // The other connection's change is kept, ours applied on top of it, exactly once.
      expect(await redis.hget(stockKey, 'stock')).toBe('3')
      expect(await store.outbox.get('reserved-at-4')).toMatchObject({ status: 'pending' })
      expect(await store.outbox.get('reserved-at-5')).toBeNull()

      attempts.length = 0
      const error = await reserve(0, [1]).catch((caught: unknown) => caught)
      expect(attempts).toEqual([1])
      expect(error).toMatchObject({ name: 'StorageError', reason: 'conflict', retryable: true })
      expect(await redis.hget(stockKey, 'stock')).toBe('2')
      expect(await store.outbox.get('reserved-at-3')).toBeNull()
    } finally {
      await own.quit()
      await other.quit()
    }
  })

  it('commits the processed mark with the handler side effect, once under redelivery', async () => {
    const clock = new ManualClock()
    const { store, keyPrefix } = await fresh(clock)
    const effects = `${storeBase(keyPrefix)}:effects`
    const delivery = { ...ev('in-1'), stream: 'ORDERS', streamSeq: 1 }
    const deliver = async (crash: boolean) => {
      const { shouldProcess } = await store.inbox.claim(delivery, { workerId: 'w', leaseMs: 1_000 })
      if (!shouldProcess) return
      await store.transaction(async (multi) => {
        multi.incr(effects)
        await store.inbox.markAsProcessed(delivery.eventId)
        if (crash) throw new Error('crashed before EXEC')
      })
    }
    await expect(deliver(true)).rejects.toThrow('crashed before EXEC')
    expect(await redis.get(effects)).toBeNull()
    expect(await store.inbox.isProcessed('in-1')).toBe(false)
    clock.advance(1_001)
    await deliver(false)
    await deliver(false)
    expect(await redis.get(effects)).toBe('1')
    expect(await store.inbox.isProcessed('in-1')).toBe(true)
    expect(await keysOf(redis, keyPrefix)).toContain(schemaKey(keyPrefix))
  })
})

const clusterNodes = process.env.TXBOX_REDIS_CLUSTER_NODES
describe.skipIf(!clusterNodes)('store.transaction on a Redis Cluster (TXBOX_REDIS_CLUSTER_NODES)', () => {
  it("applies the business write and the enqueue in one MULTI on the store's slot, or nothing", async () => {
    const cluster = new Cluster(
      (clusterNodes ?? '').split(',').map((node) => {
        const [host, port] = node.split(':')
        return { host: host ?? '127.0.0.1', port: Number(port) }
      }),
    )
    const keyPrefix = `t_${uniqueSuffix()}`
    try {
      const store = createRedisStore({ redis: cluster, keyPrefix })
      await store.migrate()
      const orderKey = `${storeBase(keyPrefix)}:order:1`
      await store.transaction(async (multi) => {
        multi.hset(orderKey, 'status', 'placed')
        await store.outbox.findOrCreate(ev('c-1'))
      })
      expect(await cluster.hget(orderKey, 'status')).toBe('placed')
      expect(await store.outbox.get('c-1')).toMatchObject({ status: 'pending' })
      await expect(
        store.transaction(async (multi) => {
          multi.hset(`${storeBase(keyPrefix)}:order:2`, 'status', 'placed')
          await store.outbox.findOrCreate(ev('c-2'))
          throw new Error('declined')
        }),
      ).rejects.toThrow('declined')
      expect(await cluster.exists(`${storeBase(keyPrefix)}:order:2`)).toBe(0)
      expect(await store.outbox.get('c-2')).toBeNull()
      // A key outside the store's slot cannot join its MULTI: EXEC fails, nothing is applied.
      const error = await store
        .transaction(async (multi) => {
          multi.set(`elsewhere-${keyPrefix}`, '1')
          await store.outbox.findOrCreate(ev('c-3'))
        })
        .catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(StorageError)
      expect((error as Error).message).toMatch(/same slot|CROSSSLOT/)
      expect(await store.outbox.get('c-3')).toBeNull()
    } finally {
      for (const node of cluster.nodes('master')) {
        const keys = await node.keys(`${storeBase(keyPrefix)}*`)
        if (keys.length > 0) await node.del(...keys)
      }
      await cluster.quit()
    }
  })
})
