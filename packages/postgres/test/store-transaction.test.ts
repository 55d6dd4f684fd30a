import { type InboxMessage, InboxProcessor, StorageError, silentLogger } from '@txbox/core'
import type { PoolClient } from 'pg'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createNamespace, event, inTransaction, type Namespace, noServer, skipReason } from './helpers.js'

/** One JetStream delivery as the processor sees it; `settled` records how it was answered. */
const delivery = (eventId: string, deliveryCount: number) => {
  const settled: string[] = []
  const message: InboxMessage = {
    eventId,
    subject: 'orders.created',
    payload: '{}',
    headers: {},
    storedHeaders: undefined,
    stream: 'ORDERS',
    streamSeq: deliveryCount,
    deliveryCount,
    ack: () => {
      settled.push('ack')
    },
    nak: () => {
      settled.push('nak')
    },
    term: () => {
      settled.push('term')
    },
  }
  return { message, settled }
}

describe.skipIf(noServer)(`store.transaction${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  let ns: Namespace
  const table = (name: string) => `"${ns.schema}".${name}`
  const rows = async (name: string, id: string) =>
    (await ns.pool.query(`SELECT 1 FROM ${table(name)} WHERE id = $1`, [id])).rowCount
  /** Every client the pool made is idle again: none was leaked by a transaction. */
  const expectAllReleased = () => {
    expect(ns.pool.waitingCount).toBe(0)
    expect(ns.pool.idleCount).toBe(ns.pool.totalCount)
  }

  beforeAll(async () => {
    ns = await createNamespace({ max: 4 })
    await ns.pool.query(`CREATE TABLE ${table('orders')} (id text PRIMARY KEY)`)
    await ns.pool.query(`CREATE TABLE ${table('accounts')} (id text PRIMARY KEY, balance int NOT NULL)`)
    await ns.pool.query(`INSERT INTO ${table('accounts')} VALUES ('a', 0), ('b', 0)`)
    // Checked when COMMIT runs, so a COMMIT can be made to fail.
    await ns.pool.query(
      `CREATE TABLE ${table('deferred')} (id int, CONSTRAINT once UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)`,
    )
  })
  afterAll(async () => {
    await ns?.dispose()
  })
  beforeEach(() => {
    expectAllReleased()
  })

  it('the business write, the enqueues and the processed mark commit together, without { tx }', async () => {
    const { outbox, inbox } = ns.store
    await inbox.claim(event('st-in-1'), { leaseMs: 30_000, workerId: 'w' })
    const result = await ns.store.transaction(async (client, { attempt }) => {
      await client.query(`INSERT INTO ${table('orders')} (id) VALUES ('st-1')`)
      await outbox.findOrCreate(event('st-1'))
      await outbox.findOrCreateMany([event('st-2'), event('st-3')])
      await inbox.markAsProcessed('st-in-1')
      // Not visible outside before COMMIT: the writes joined the transaction.
      expect(await outbox.get('st-1')).toBeNull()
      expect(await inbox.isProcessed('st-in-1')).toBe(false)
      return attempt
    })
    expect(result).toBe(1)
    expect(await rows('orders', 'st-1')).toBe(1)
    expect((await outbox.get('st-1'))?.status).toBe('pending')
    expect((await outbox.get('st-3'))?.status).toBe('pending')
    expect(await inbox.isProcessed('st-in-1')).toBe(true)
    expectAllReleased()
  })

  it('a throw rolls the business write, the enqueue and the processed mark back together', async () => {
    const { outbox, inbox } = ns.store
    await inbox.claim(event('st-in-2'), { leaseMs: 30_000, workerId: 'w' })
    await expect(
      ns.store.transaction(async (client) => {
        await client.query(`INSERT INTO ${table('orders')} (id) VALUES ('st-4')`)
        await outbox.findOrCreate(event('st-4'))
        await inbox.markAsProcessed('st-in-2')
        throw new Error('business rule failed')
      }),
    ).rejects.toThrow('business rule failed')
    expect(await rows('orders', 'st-4')).toBe(0)
    expect(await outbox.get('st-4')).toBeNull()
    expect(await inbox.isProcessed('st-in-2')).toBe(false)
    expectAllReleased()
  })

  it('an explicit { tx } wins over the ambient transaction', async () => {
    const { outbox } = ns.store
    await ns.store.transaction(async () => {
      await inTransaction(
        ns.pool,
        async (other) => {
          await outbox.findOrCreate(event('st-explicit'), { tx: other })
        },
        'ROLLBACK',
      )
      await outbox.findOrCreate(event('st-ambient'))
    })
    expect(await outbox.get('st-explicit')).toBeNull()
    expect((await outbox.get('st-ambient'))?.status).toBe('pending')
  })

  it('a nested call joins the outer transaction: same client, same attempt, rolled back with it', async () => {
    const { outbox } = ns.store
    let inner: PoolClient | undefined
    let outer: PoolClient | undefined
    await expect(
      ns.store.transaction(async (client) => {
        outer = client
        await ns.store.transaction(async (nested, { attempt }) => {
          inner = nested
          expect(attempt).toBe(1)
          await outbox.findOrCreate(event('st-nested'))
        })
        throw new Error('outer fails after the nested call returned')
      }),
    ).rejects.toThrow('outer fails')
    expect(inner).toBe(outer)
    expect(await outbox.get('st-nested')).toBeNull()
    expectAllReleased()
  })

  it('retries the whole function after a real deadlock between two connections, with attempt numbers', async () => {
    const { outbox } = ns.store
    const attempts: Record<string, number[]> = { ab: [], ba: [] }
    // Both first updates are done before either takes its second lock (first attempt only).
    let arrived = 0
    let release: () => void = () => undefined
    const bothLocked = new Promise<void>((resolve) => {
      release = resolve
    })
    const transfer = (name: 'ab' | 'ba', first: string, second: string) =>
      ns.store.transaction(
        async (client, { attempt }) => {
          attempts[name]?.push(attempt)
          await client.query(`UPDATE ${table('accounts')} SET balance = balance + 1 WHERE id = $1`, [first])
          if (attempt === 1) {
            arrived++
            if (arrived === 2) release()
            await bothLocked
          }
          await client.query(`UPDATE ${table('accounts')} SET balance = balance - 1 WHERE id = $1`, [second])
          await outbox.findOrCreate(event(`st-transfer-${name}`))
          return attempt
        },
        { retries: 2 },
      )
    const [ab, ba] = await Promise.all([transfer('ab', 'a', 'b'), transfer('ba', 'b', 'a')])
    // PostgreSQL aborts exactly one of the two; it alone runs again.
    expect([ab, ba].sort()).toEqual([1, 2])
    expect([attempts.ab, attempts.ba].map((list) => list?.join(',')).sort()).toEqual(['1', '1,2'])
    expect((await outbox.get('st-transfer-ab'))?.status).toBe('pending')
    expect((await outbox.get('st-transfer-ba'))?.status).toBe('pending')
    const balances = await ns.pool.query(`SELECT id, balance FROM ${table('accounts')} ORDER BY id`)
    expect(balances.rows).toEqual([
      { id: 'a', balance: 0 },
      { id: 'b', balance: 0 },
    ])
    expectAllReleased()
  })

  it("without retries the deadlock victim's own error (SQLSTATE 40P01) reaches the caller and nothing of it is stored", async () => {
    const { outbox } = ns.store
    let arrived = 0
    let release: () => void = () => undefined
    const bothLocked = new Promise<void>((resolve) => {
      release = resolve
    })
    const transfer = (name: string, first: string, second: string) =>
      ns.store.transaction(async (client) => {
        await client.query(`UPDATE ${table('accounts')} SET balance = balance + 1 WHERE id = $1`, [first])
        await outbox.findOrCreate(event(`st-once-${name}`))
        arrived++
        if (arrived === 2) release()
        await bothLocked
        await client.query(`UPDATE ${table('accounts')} SET balance = balance - 1 WHERE id = $1`, [second])
      })
    const results = await Promise.allSettled([transfer('ab', 'a', 'b'), transfer('ba', 'b', 'a')])
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    expect(failed).toHaveLength(1)
    const error = failed[0]?.reason
    // The deadlock surfaces from the caller's own client.query, as pg raised it.
    expect((error as { code?: string }).code).toBe('40P01')
    const stored = [await outbox.get('st-once-ab'), await outbox.get('st-once-ba')].filter((e) => e !== null)
    expect(stored).toHaveLength(1)
    expectAllReleased()
  })

  it('InboxProcessor runs the handler in store.transaction: its side effect, its enqueue and the processed mark commit once under redelivery', async () => {
    const { outbox, inbox } = ns.store
    let failing = true
    // <PoolClient>: the handler's tx is store.transaction's client.
    const processor = new InboxProcessor<PoolClient>({
      store: ns.store,
      source: { subscribe: () => Promise.reject(new Error('handle() is driven by the test')) },
      logger: silentLogger,
      random: () => 0,
      handler: async ({ event: delivered, tx }) => {
        await tx.query(`INSERT INTO ${table('orders')} (id) VALUES ($1)`, [`side-${delivered.eventId}`])
        await outbox.findOrCreate(event(`reply-${delivered.eventId}`))
        if (failing) throw new Error('downstream busy')
      },
    })
    const first = delivery('st-processor', 1)
    await processor.handle(first.message)
    expect(first.settled).toEqual(['nak'])
    expect(await rows('orders', 'side-st-processor')).toBe(0)
    expect(await outbox.get('reply-st-processor')).toBeNull()
    expect(await inbox.isProcessed('st-processor')).toBe(false)

    failing = false
    const second = delivery('st-processor', 2)
    const third = delivery('st-processor', 3)
    await processor.handle(second.message)
    await processor.handle(third.message)
    expect([...second.settled, ...third.settled]).toEqual(['ack', 'ack'])
    expect(await rows('orders', 'side-st-processor')).toBe(1)
    expect((await outbox.get('reply-st-processor'))?.status).toBe('pending')
    expect(await inbox.isProcessed('st-processor')).toBe(true)
    expectAllReleased()
  })

  it('a failed COMMIT is a StorageError and its client is destroyed, not returned to the pool', async () => {
    const { outbox } = ns.store
    const before = ns.pool.totalCount
    let pid: number | undefined
    const failure = await ns.store
      .transaction(async (client) => {
        pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid
        await client.query(`INSERT INTO ${table('deferred')} VALUES (1), (1)`)
        await outbox.findOrCreate(event('st-commit-fails'))
      })
      .catch((error: unknown) => error)
    expect(failure).toBeInstanceOf(StorageError)
    expect((failure as StorageError).operation).toBe('transaction.commit')
    expect((failure as StorageError).message).toMatch(/SQLSTATE 23505/)
    expect(await outbox.get('st-commit-fails')).toBeNull()
    expect(ns.pool.totalCount).toBe(before - 1)
    // The server session is gone too (its close is asynchronous: poll with a deadline).
    const deadline = Date.now() + 10_000
    let alive = 1
    while (alive > 0 && Date.now() < deadline) {
      alive = (await ns.pool.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount ?? 0
      if (alive > 0) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(alive).toBe(0)
    expectAllReleased()
  })
})
