import { describe, expect, it } from 'vitest'
import {
  createMemoryStore,
  type MemoryTransaction,
  memoryTransactionDriver,
  StorageError,
  type TransactionDriver,
  ValidationError,
} from '../src/index.js'

const event = (eventId: string) => ({ eventId, subject: 'orders.created', payload: `{"id":"${eventId}"}` })

/** The memory driver, counting releases and failing the commits a test scripts. */
const countingDriver = (failCommit: (commit: number) => unknown = () => undefined) => {
  const counts = { begin: 0, commit: 0, rollback: 0, release: 0 }
  const driver: TransactionDriver<MemoryTransaction> = {
    begin: async () => {
      counts.begin++
      return memoryTransactionDriver.begin()
    },
    commit: async (tx) => {
      counts.commit++
      const failure = failCommit(counts.commit)
      if (failure !== undefined) throw failure
      await memoryTransactionDriver.commit(tx)
    },
    rollback: async (tx) => {
      counts.rollback++
      await memoryTransactionDriver.rollback(tx)
    },
    release: (tx, broken) => {
      counts.release++
      return memoryTransactionDriver.release(tx, broken)
    },
  }
  return { counts, driver }
}

const conflict = () =>
  new StorageError('memory', 'transaction.commit', new Error('write conflict'), undefined, {
    reason: 'conflict',
    retryable: true,
  })

/** A processing inbox event, so `markAsProcessed` has something to mark. */
const received = async (store: ReturnType<typeof createMemoryStore>, eventId: string) => {
  await store.inbox.claim(event(eventId), { leaseMs: 60_000, workerId: 'w' })
}

describe('memory store.transaction', () => {
  it('commits the business write, the enqueues and the processed mark together, none visible before commit', async () => {
    const store = createMemoryStore()
    await received(store, 'in-1')
    const orders: string[] = []
    await store.transaction(async (tx) => {
      tx.enlist(() => orders.push('order-1'))
      await store.outbox.findOrCreate(event('a'))
      await store.outbox.findOrCreateMany([event('b'), event('c')])
      await store.inbox.markAsProcessed('in-1')
      expect(orders).toEqual([])
      expect(store.outbox.snapshot()).toEqual([])
      expect(await store.inbox.isProcessed('in-1')).toBe(false)
    })
    expect(orders).toEqual(['order-1'])
    expect(store.outbox.snapshot().map((e) => e.eventId)).toEqual(['a', 'b', 'c'])
    expect(await store.inbox.isProcessed('in-1')).toBe(true)
  })

  it('rolls everything back together when fn throws, and rethrows its error', async () => {
    const store = createMemoryStore()
    await received(store, 'in-1')
    const orders: string[] = []
    const failure = new Error('payment declined')
    await expect(
      store.transaction(async (tx) => {
        tx.enlist(() => orders.push('order-1'))
        await store.outbox.findOrCreate(event('a'))
        await store.inbox.markAsProcessed('in-1')
        throw failure
      }),
    ).rejects.toBe(failure)
    expect(orders).toEqual([])
    expect(store.outbox.snapshot()).toEqual([])
    expect((await store.inbox.get('in-1'))?.status).toBe('processing')
  })

  it('an explicit { tx } wins over the ambient transaction', async () => {
    const store = createMemoryStore()
    const other = store.begin()
    await store.transaction(async () => {
      await store.outbox.findOrCreate(event('mine'), { tx: other })
      await store.outbox.findOrCreate(event('ambient'))
    })
    expect(store.outbox.snapshot().map((e) => e.eventId)).toEqual(['ambient'])
    other.commit()
    expect(store.outbox.snapshot().map((e) => e.eventId)).toEqual(['ambient', 'mine'])
  })

  it('a nested store.transaction joins: its writes commit with the outer ones and roll back with them', async () => {
    const { counts, driver } = countingDriver()
    const store = createMemoryStore({ transactionDriver: driver })
    await store.transaction(async (outer) => {
      await store.transaction(async (inner) => {
        expect(inner).toBe(outer)
        await store.outbox.findOrCreate(event('inner'))
      })
      expect(store.outbox.snapshot()).toEqual([])
    })
    expect(store.outbox.snapshot().map((e) => e.eventId)).toEqual(['inner'])
    expect(counts).toEqual({ begin: 1, commit: 1, rollback: 0, release: 1 })

    await expect(
      store.transaction(async () => {
        await store.transaction(async () => {
          await store.outbox.findOrCreate(event('gone'))
        })
        throw new Error('outer fails after the nested call returned')
      }),
    ).rejects.toThrow('outer fails')
    expect(store.outbox.snapshot().map((e) => e.eventId)).toEqual(['inner'])
  })

  it("retries the whole function on a commit conflict with the attempt number; the failed attempt's writes are gone", async () => {
    const { counts, driver } = countingDriver((commit) => (commit === 1 ? conflict() : undefined))
    const store = createMemoryStore({ transactionDriver: driver })
    const attempts: number[] = []
    await store.transaction(
      async (_tx, { attempt }) => {
        attempts.push(attempt)
        await store.outbox.findOrCreate(event(`attempt-${attempt}`))
      },
      { retries: 2 },
    )
    expect(attempts).toEqual([1, 2])
    expect(store.outbox.snapshot().map((e) => e.eventId)).toEqual(['attempt-2'])
    expect(counts).toEqual({ begin: 2, commit: 2, rollback: 1, release: 2 })
  })

  it('releases exactly once per attempt, also when the commit fails for good', async () => {
    const failure = new StorageError('memory', 'transaction.commit', new Error('disk full'))
    const { counts, driver } = countingDriver(() => failure)
    const store = createMemoryStore({ transactionDriver: driver })
    await expect(
      store.transaction(
        async () => {
          await store.outbox.findOrCreate(event('a'))
        },
        { retries: 3 },
      ),
    ).rejects.toBe(failure)
    expect(counts).toEqual({ begin: 1, commit: 1, rollback: 1, release: 1 })
    expect(store.outbox.snapshot()).toEqual([])
  })

  it('two concurrent transactions never join each other: one rolls back, the other commits', async () => {
    const store = createMemoryStore()
    let bothOpen: () => void = () => {}
    const opened = new Promise<void>((resolve) => {
      bothOpen = resolve
    })
    let entered = 0
    const enter = async () => {
      if (++entered === 2) bothOpen()
      await opened
    }
    const committed = store.transaction(async () => {
      await enter()
      await store.outbox.findOrCreate(event('kept'))
    })
    const rolledBack = store.transaction(async () => {
      await enter()
      await store.outbox.findOrCreate(event('dropped'))
      throw new Error('second fails')
    })
    await committed
    await expect(rolledBack).rejects.toThrow('second fails')
    expect(store.outbox.snapshot().map((e) => e.eventId)).toEqual(['kept'])
  })

  it('outside store.transaction a write applies at once, as before', async () => {
    const store = createMemoryStore()
    await store.outbox.findOrCreate(event('a'))
    expect(store.outbox.snapshot().map((e) => e.eventId)).toEqual(['a'])
  })

  it('refuses bad input with a [txbox] [memory] ValidationError, running nothing', async () => {
    const { counts, driver } = countingDriver()
    const store = createMemoryStore({ transactionDriver: driver })
    const calls = [
      () => store.transaction(undefined as never),
      () => store.transaction(async () => {}, { retries: -2 }),
      () => store.transaction(async () => {}, null as never),
    ]
    for (const call of calls) {
      const error = await call().catch((e: unknown) => e)
      expect(error).toBeInstanceOf(ValidationError)
      expect((error as Error).message).toMatch(
        /^\[txbox\] \[memory\] transaction|^\[txbox\] \[memory\] the transaction function/,
      )
    }
    expect(counts.begin).toBe(0)
  })

  it('refuses a transactionDriver without the four functions, naming the missing ones', () => {
    for (const [driver, missing] of [
      [{ ...memoryTransactionDriver, release: undefined }, 'release'],
      [{ begin: memoryTransactionDriver.begin }, 'commit, rollback, release'],
      [null, 'begin, commit, rollback, release'],
    ] as const) {
      const build = () => createMemoryStore({ transactionDriver: driver as never })
      expect(build).toThrow(ValidationError)
      expect(build).toThrow(
        `[txbox] [memory] transactionDriver must have the functions begin, commit, rollback and release (missing: ${missing}); wrap memoryTransactionDriver, or leave the option out`,
      )
    }
  })
})
