import { type InboxMessage, InboxProcessor, StorageError, silentLogger, ValidationError } from '@txbox/core'
import type { Pool, PoolConnection } from 'mysql2/promise'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { MySqlStore } from '../src/index.js'
import { freshStore, makePool, ordersTable, poolCounts, SKIP, SKIP_REASON } from './helpers.js'

const event = (eventId: string) => ({ eventId, subject: 'orders.created', payload: '{}' })

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

/** A promise with its resolve function, to line two transactions up. */
const gate = () => {
  let open = () => {}
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return { opened, open }
}

describe.skipIf(SKIP)(`store.transaction${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  let pool: Pool
  let store: MySqlStore
  let orders: Awaited<ReturnType<typeof ordersTable>>
  let drop: () => Promise<void>

  beforeAll(async () => {
    pool = makePool({ connectionLimit: 4 })
    ;({ store, drop } = await freshStore(pool))
    orders = await ordersTable(pool, store.tablePrefix)
  })
  afterAll(async () => {
    await orders.drop()
    await drop()
    await pool.end()
  })
  // Every test ends with every connection back in the pool: released, none leaked.
  afterEach(() => {
    const { all, idle } = poolCounts(pool)
    expect(idle).toBe(all)
  })

  it('commits the business write, the enqueue and the processed mark together; the writes join without { tx }', async () => {
    await store.inbox.claim(event('in-commit'), { leaseMs: 60_000, workerId: 'w' })
    const attempt = await store.transaction(async (connection, { attempt }) => {
      await connection.execute(`INSERT INTO \`${orders.table}\` (id) VALUES (?)`, ['o-commit'])
      await store.outbox.findOrCreate(event('e-commit'))
      await store.outbox.findOrCreateMany([event('e-commit-2')])
      await store.inbox.markAsProcessed('in-commit')
      // Read on another pooled connection: nothing is visible before COMMIT.
      expect(await store.outbox.get('e-commit')).toBeNull()
      expect((await store.inbox.get('in-commit'))?.status).toBe('processing')
      return attempt
    })
    expect(attempt).toBe(1)
    expect(await orders.ids()).toContain('o-commit')
    expect((await store.outbox.get('e-commit'))?.status).toBe('pending')
    expect((await store.outbox.get('e-commit-2'))?.status).toBe('pending')
    expect((await store.inbox.get('in-commit'))?.status).toBe('processed')
  })

  it("rolls everything back when fn throws, and rethrows fn's own error", async () => {
    await store.inbox.claim(event('in-rollback'), { leaseMs: 60_000, workerId: 'w' })
    const failure = new Error('payment declined')
    const error = await store
      .transaction(async (connection) => {
        await connection.execute(`INSERT INTO \`${orders.table}\` (id) VALUES (?)`, ['o-rollback'])
        await store.outbox.findOrCreate(event('e-rollback'))
        await store.inbox.markAsProcessed('in-rollback')
        throw failure
      })
      .catch((caught: unknown) => caught)
    expect(error).toBe(failure)
    expect(await orders.ids()).not.toContain('o-rollback')
    expect(await store.outbox.get('e-rollback')).toBeNull()
    expect((await store.inbox.get('in-rollback'))?.status).toBe('processing')
  })

  it('an explicit { tx } wins over the ambient transaction', async () => {
    const own = await pool.getConnection()
    try {
      await own.beginTransaction()
      await store
        .transaction(async () => {
          await store.outbox.findOrCreate(event('e-explicit'), { tx: own })
          await store.outbox.findOrCreate(event('e-ambient'))
          throw new Error('roll the ambient one back')
        })
        .catch(() => undefined)
      await own.commit()
    } finally {
      own.release()
    }
    expect((await store.outbox.get('e-explicit'))?.status).toBe('pending')
    expect(await store.outbox.get('e-ambient')).toBeNull()
  })

  it('a nested call joins the outer transaction (same connection, same attempt) and rolls back with it', async () => {
    const error = await store
      .transaction(async (outer) => {
        await store.transaction(async (inner, { attempt }) => {
          expect(inner).toBe(outer)
          expect(attempt).toBe(1)
          await store.outbox.findOrCreate(event('e-nested'))
        })
        const nestedRetries = await store
          .transaction(async () => undefined, { retries: 1 })
          .catch((caught: unknown) => caught)
        expect(nestedRetries).toBeInstanceOf(ValidationError)
        throw new Error('outer fails after the nested call returned')
      })
      .catch((caught: unknown) => caught)
    expect(error).toMatchObject({ message: 'outer fails after the nested call returned' })
    expect(await store.outbox.get('e-nested')).toBeNull()
  })

  it('runs fn again after a real deadlock between two of its transactions, with the attempt numbers', async () => {
    await pool.query(`INSERT INTO \`${orders.table}\` (id) VALUES ('dl-a'), ('dl-b')`)
    const a = gate()
    const b = gate()
    const ab: number[] = []
    const ba: number[] = []
    // Each locks its first row, waits until the other holds its own, then wants the other's:
    // InnoDB finds the cycle and rolls one back (errno 1213); that one runs again.
    const transfer = (first: string, second: string, mine: typeof a, theirs: typeof a, log: number[]) =>
      store.transaction(
        async (connection, { attempt }) => {
          log.push(attempt)
          await connection.execute(`UPDATE \`${orders.table}\` SET n = n + 1 WHERE id = ?`, [first])
          if (attempt === 1) {
            mine.open()
            await theirs.opened
          }
          await connection.execute(`UPDATE \`${orders.table}\` SET n = n + 1 WHERE id = ?`, [second])
          await store.outbox.findOrCreate(event(`e-deadlock-${first}`))
        },
        { retries: 2 },
      )
    await Promise.all([transfer('dl-a', 'dl-b', a, b, ab), transfer('dl-b', 'dl-a', b, a, ba)])
    expect([ab, ba].sort((x, y) => x.length - y.length)).toEqual([[1], [1, 2]])
    const [rows] = await pool.query(`SELECT id, n FROM \`${orders.table}\` WHERE id LIKE 'dl-%' ORDER BY id`)
    // Each committed attempt added one to each row; the deadlocked attempt added nothing.
    expect(rows).toEqual([
      { id: 'dl-a', n: 2 },
      { id: 'dl-b', n: 2 },
    ])
    expect((await store.outbox.get('e-deadlock-dl-a'))?.status).toBe('pending')
    expect((await store.outbox.get('e-deadlock-dl-b'))?.status).toBe('pending')
  })

  it('without retries the deadlock reaches the caller as a conflict StorageError', async () => {
    await pool.query(`INSERT INTO \`${orders.table}\` (id) VALUES ('nr-a'), ('nr-b')`)
    const a = gate()
    const b = gate()
    const run = (first: string, second: string, mine: typeof a, theirs: typeof a) =>
      store.transaction(async (connection) => {
        await connection.execute(`UPDATE \`${orders.table}\` SET n = n + 1 WHERE id = ?`, [first])
        mine.open()
        await theirs.opened
        await connection.execute(`UPDATE \`${orders.table}\` SET n = n + 1 WHERE id = ?`, [second])
      })
    const results = await Promise.allSettled([run('nr-a', 'nr-b', a, b), run('nr-b', 'nr-a', b, a)])
    const rejected = results.filter((result) => result.status === 'rejected')
    expect(rejected).toHaveLength(1)
    const reason = (rejected[0] as PromiseRejectedResult).reason as { errno?: number }
    // fn's own error, as the driver threw it: the caller's code, not txbox's, ran the statement.
    expect(reason.errno).toBe(1213)
  })

  it('InboxProcessor runs the handler in store.transaction: its side effect, its enqueue and the processed mark commit once under redelivery', async () => {
    let failing = true
    // <PoolConnection>: the handler's tx is store.transaction's connection.
    const processor = new InboxProcessor<PoolConnection>({
      store,
      source: { subscribe: () => Promise.reject(new Error('handle() is driven by the test')) },
      logger: silentLogger,
      random: () => 0,
      handler: async ({ event: delivered, tx }) => {
        await tx.execute(`INSERT INTO \`${orders.table}\` (id) VALUES (?)`, [`side-${delivered.eventId}`])
        await store.outbox.findOrCreate(event(`reply-${delivered.eventId}`))
        if (failing) throw new Error('downstream busy')
      },
    })
    const first = delivery('in-processor', 1)
    await processor.handle(first.message)
    expect(first.settled).toEqual(['nak'])
    expect(await orders.ids()).not.toContain('side-in-processor')
    expect(await store.outbox.get('reply-in-processor')).toBeNull()
    expect((await store.inbox.get('in-processor'))?.status).toBe('failed')

    failing = false
    const second = delivery('in-processor', 2)
    const third = delivery('in-processor', 3)
    await processor.handle(second.message)
    await processor.handle(third.message)
    expect([...second.settled, ...third.settled]).toEqual(['ack', 'ack'])
    expect((await orders.ids()).filter((id) => id === 'side-in-processor')).toHaveLength(1)
    expect((await store.outbox.get('reply-in-processor'))?.status).toBe('pending')
    expect((await store.inbox.get('in-processor'))?.status).toBe('processed')
  })

  it('destroys a connection whose COMMIT failed instead of giving it back, and reports the commit', async () => {
    const killer = await pool.getConnection()
    let killed = 0
    try {
      const error = await store
        .transaction(async (connection) => {
          await store.outbox.findOrCreate(event('e-killed'))
          killed = connection.threadId
          await killer.query(`KILL CONNECTION ${killed}`)
        })
        .catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(StorageError)
      expect(error).toMatchObject({ operation: 'transaction.commit', reason: 'unavailable' })
    } finally {
      killer.release()
    }
    expect(await store.outbox.get('e-killed')).toBeNull()
    // The killed connection left the pool (the afterEach check: no other is kept busy).
    const threads = (
      pool as unknown as { pool: { _allConnections: { toArray(): { threadId: number }[] } } }
    ).pool._allConnections
      .toArray()
      .map((connection) => connection.threadId)
    expect(killed).toBeGreaterThan(0)
    expect(threads).not.toContain(killed)
  })
})
