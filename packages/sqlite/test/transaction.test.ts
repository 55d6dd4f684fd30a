import { StorageError, ValidationError } from '@txbox/core'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import { createSqliteStore, type SqliteDatabase } from '../src/index.js'
import { event, LEASE, openStore, tempDirectory } from './helpers.js'

const temp = tempDirectory()
afterAll(() => temp.cleanup())

/** A migrated store on a fresh file, its business table, and a second connection that reads committed rows. */
const setup = async (options: { busyTimeoutMs?: number } = {}) => {
  const file = temp.file(`tx-${Math.random().toString(36).slice(2)}.db`)
  const { db, store } = await openStore(file)
  const timed = options.busyTimeoutMs === undefined ? store : createSqliteStore({ db, ...options })
  db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL NOT NULL)')
  const reader = new Database(file, { readonly: true })
  const committed = {
    orders: () =>
      (reader.prepare('SELECT id FROM orders ORDER BY id').all() as { id: number }[]).map((r) => r.id),
    events: () =>
      (reader.prepare('SELECT event_id FROM txbox_outbox ORDER BY seq').all() as { event_id: string }[]).map(
        (r) => r.event_id,
      ),
    inbox: (id: string) =>
      (
        reader.prepare('SELECT status FROM txbox_inbox WHERE event_id = ?').get(id) as
          | { status: string }
          | undefined
      )?.status,
  }
  const insertOrder = (on: SqliteDatabase, id: number) =>
    on.prepare('INSERT INTO orders (id, total) VALUES (?, ?)').run(id, 9.5)
  return { file, db, store: timed, reader, committed, insertOrder }
}

/** A promise and its resolve, to hold a transaction open across an await. */
const gate = () => {
  let open: () => void = () => {}
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return { open, opened }
}

describe('store.transaction on SQLite', () => {
  it('commits the business write and the enqueue together, and rolls both back together', async () => {
    const { db, store, committed, insertOrder } = await setup()
    const result = await store.transaction(async (tx, { attempt }) => {
      expect(tx).toBe(db)
      expect(db.inTransaction).toBe(true)
      insertOrder(tx, 1)
      await store.outbox.findOrCreate(event('order-1'))
      // Not visible to another connection before COMMIT.
      expect(committed.events()).toEqual([])
      return attempt
    })
    expect(result).toBe(1)
    expect(committed.orders()).toEqual([1])
    expect(committed.events()).toEqual(['order-1'])

    const failure = new Error('payment declined')
    await expect(
      store.transaction(async (tx) => {
        insertOrder(tx, 2)
        await store.outbox.findOrCreate(event('order-2'))
        await store.outbox.findOrCreateMany([event('order-2b'), event('order-2c')])
        throw failure
      }),
    ).rejects.toBe(failure)
    expect(committed.orders()).toEqual([1])
    expect(committed.events()).toEqual(['order-1'])
    expect(db.inTransaction).toBe(false)
  })

  it('lets an explicit { tx } and a nested store.transaction join the open transaction', async () => {
    const { db, store, committed, insertOrder } = await setup()
    await expect(
      store.transaction(async (tx) => {
        await store.outbox.findOrCreate(event('explicit'), { tx })
        await store.transaction(async (inner, { attempt }) => {
          expect(inner).toBe(tx)
          expect(attempt).toBe(1)
          insertOrder(inner, 7)
          await store.outbox.findOrCreate(event('nested'))
        })
        await expect(store.transaction(async () => {}, { retries: 2 })).rejects.toBeInstanceOf(
          ValidationError,
        )
        throw new Error('undo all')
      }),
    ).rejects.toThrow('undo all')
    expect(committed.events()).toEqual([])
    expect(committed.orders()).toEqual([])
    expect(db.inTransaction).toBe(false)
  })

  it('commits the processed mark with the handler side effect, once under redelivery', async () => {
    const { store, committed, insertOrder } = await setup()
    const delivery = { ...event('in-1'), stream: 'ORDERS', streamSeq: 1 }
    const handle = () =>
      store.transaction(async (tx) => {
        const { shouldProcess } = await store.inbox.claim(delivery, { workerId: 'w', ...LEASE })
        if (!shouldProcess) return false
        insertOrder(tx, 100)
        await store.inbox.markAsProcessed(delivery.eventId)
        return true
      })
    await expect(
      store.transaction(async () => {
        await store.inbox.claim(delivery, { workerId: 'w', ...LEASE })
        await store.inbox.markAsProcessed(delivery.eventId)
        throw new Error('handler crashed')
      }),
    ).rejects.toThrow('handler crashed')
    expect(committed.inbox('in-1')).toBeUndefined()
    expect(await handle()).toBe(true)
    expect(await handle()).toBe(false)
    expect(committed.orders()).toEqual([100])
    expect(committed.inbox('in-1')).toBe('processed')
  })

  it('keeps other async contexts out of the open transaction: their store calls wait for its end', async () => {
    const { db, store, committed, insertOrder } = await setup()
    const hold = gate()
    const started = gate()
    const order: string[] = []
    const transaction = store.transaction(async (tx) => {
      started.open()
      insertOrder(tx, 1)
      await store.outbox.findOrCreate(event('in-tx'))
      order.push('tx: wrote')
      await hold.opened
      order.push('tx: rolling back')
      throw new Error('rolled back on purpose')
    })
    await started.opened
    // Another async context: an enqueue without tx, a claim (a relay), a second transaction.
    const outside = store.outbox.findOrCreate(event('outside')).then(() => order.push('outside: enqueued'))
    const claim = store.outbox.claim({ limit: 10, workerId: 'relay', ...LEASE }).then((claimed) => {
      order.push('relay: claimed')
      return claimed.map((e) => e.eventId)
    })
    const second = store.transaction(async (tx) => {
      order.push('second: began')
      insertOrder(tx, 2)
      await store.outbox.findOrCreate(event('second'))
    })
    // An explicit { tx: db } from this other context would write into the first transaction.
    await expect(store.outbox.findOrCreate(event('sneaky'), { tx: db })).rejects.toThrow(
      /store\.transaction\(\) of another async context/,
    )
    for (let tick = 0; tick < 20; tick++) await new Promise((resolve) => setImmediate(resolve))
    expect(order).toEqual(['tx: wrote'])
    hold.open()
    await expect(transaction).rejects.toThrow('rolled back on purpose')
    await Promise.all([outside, second])
    // The claim ran after the rollback (never refused as "inside a transaction"), and the
    // rolled-back event was never there to claim; the waiting calls run in their own order.
    expect(await claim).not.toContain('in-tx')
    expect(order.slice(0, 2)).toEqual(['tx: wrote', 'tx: rolling back'])
    expect(order.slice(2).sort()).toEqual(['outside: enqueued', 'relay: claimed', 'second: began'])
    expect(committed.events().sort()).toEqual(['outside', 'second'])
    expect(committed.orders()).toEqual([2])
    expect(db.inTransaction).toBe(false)
  })

  it('runs two concurrent transactions one after the other, each with its own writes', async () => {
    const { store, committed, insertOrder } = await setup()
    const inside: number[] = []
    await Promise.all(
      [1, 2, 3].map((id) =>
        store
          .transaction(async (tx) => {
            inside.push(id)
            insertOrder(tx, id)
            // Let every other caller run as far as it can: were the transactions not
            // serialized, another one would begin (and push its id) here.
            for (let tick = 0; tick < 20; tick++) await new Promise((resolve) => setImmediate(resolve))
            await store.outbox.findOrCreate(event(`order-${id}`))
            inside.push(-id)
            if (id === 2) throw new Error('only 2 fails')
          })
          .catch(() => undefined),
      ),
    )
    // Each one ends before the next begins.
    expect(inside).toEqual([1, -1, 2, -2, 3, -3])
    expect(committed.orders()).toEqual([1, 3])
    expect(committed.events()).toEqual(['order-1', 'order-3'])
  })

  it('refuses to begin over a transaction it did not open, before any write', async () => {
    const { db, store, committed } = await setup()
    db.exec('BEGIN')
    let called = false
    await expect(
      store.transaction(async () => {
        called = true
      }),
    ).rejects.toThrow(/a transaction it did not open is already open on this connection/)
    expect(called).toBe(false)
    db.exec('ROLLBACK')
    await store.transaction(async () => {
      await store.outbox.findOrCreate(event('after'))
    })
    expect(committed.events()).toEqual(['after'])
  })

  it('fails with a timeout StorageError when another connection holds the write lock, and gives the connection back', async () => {
    const { file, db, store, committed } = await setup({ busyTimeoutMs: 50 })
    const other = new Database(file)
    other.exec('BEGIN IMMEDIATE')
    let called = false
    const error = await store
      .transaction(
        async () => {
          called = true
        },
        { retries: 3 },
      )
      .catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(StorageError)
    expect(error).toMatchObject({ operation: 'transaction.begin', reason: 'timeout' })
    expect(called).toBe(false)
    other.exec('ROLLBACK')
    other.close()
    expect(db.inTransaction).toBe(false)
    await store.outbox.findOrCreate(event('next'))
    expect(committed.events()).toEqual(['next'])
  })

  it('rolls back and gives the connection back when COMMIT fails', async () => {
    const { db, store, committed, insertOrder } = await setup()
    const error = await store
      .transaction(async (tx) => {
        insertOrder(tx, 1)
        await store.outbox.findOrCreate(event('lost'))
        // The function ends the transaction itself: COMMIT then has none to commit.
        tx.exec('ROLLBACK')
      })
      .catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(StorageError)
    expect(error).toMatchObject({ operation: 'transaction.commit' })
    expect(db.inTransaction).toBe(false)
    expect(committed.events()).toEqual([])
    await store.transaction(async () => store.outbox.findOrCreate(event('works')))
    expect(committed.events()).toEqual(['works'])
  })
})
