import Database from 'better-sqlite3'
import { Kysely, SqliteDialect, type Transaction } from 'kysely'
import { afterAll, describe, expect, it } from 'vitest'
import { createSqliteStore } from '../src/index.js'
import { kyselyTransaction } from '../src/orm/kysely.js'
import { event, LEASE, tempDirectory } from './helpers.js'

const temp = tempDirectory()
afterAll(() => temp.cleanup())

interface Schema {
  orders: { id: number; total: number }
}

const setup = async () => {
  const file = temp.file(`kysely-${Math.random().toString(36).slice(2)}.db`)
  const db = new Database(file)
  const store = createSqliteStore({ db })
  await store.migrate()
  const orm = new Kysely<Schema>({ dialect: new SqliteDialect({ database: db }) })
  await orm.schema
    .createTable('orders')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('total', 'real')
    .execute()
  const reader = new Database(file, { readonly: true })
  const committed = {
    orders: () =>
      (reader.prepare('SELECT id FROM orders ORDER BY id').all() as { id: number }[]).map((r) => r.id),
    events: () =>
      (reader.prepare('SELECT event_id FROM txbox_outbox ORDER BY seq').all() as { event_id: string }[]).map(
        (r) => r.event_id,
      ),
  }
  return { file, db, store, orm, committed }
}

describe('Kysely (SqliteDialect on the store connection)', () => {
  it('commits the Kysely write and the enqueue together in one Kysely transaction, and rolls both back together', async () => {
    const { db, store, orm, committed } = await setup()
    await orm.transaction().execute(async (trx) => {
      await trx.insertInto('orders').values({ id: 1, total: 9.5 }).execute()
      const tx = await kyselyTransaction(trx)
      expect(tx).toBe(db)
      await store.outbox.findOrCreate(event('order-1'), { tx })
    })
    expect(committed.orders()).toEqual([1])
    expect(committed.events()).toEqual(['order-1'])

    await expect(
      orm.transaction().execute(async (trx) => {
        await trx.insertInto('orders').values({ id: 2, total: 1 }).execute()
        await store.outbox.findOrCreate(event('order-2'), { tx: await kyselyTransaction(trx) })
        throw new Error('declined')
      }),
    ).rejects.toThrow('declined')
    expect(committed.orders()).toEqual([1])
    expect(committed.events()).toEqual(['order-1'])
  })

  it('runs Kysely queries inside store.transaction on the same connection', async () => {
    const { store, orm, committed } = await setup()
    await expect(
      store.transaction(async () => {
        await orm.insertInto('orders').values({ id: 3, total: 2 }).execute()
        await store.outbox.findOrCreate(event('order-3'))
        throw new Error('undo')
      }),
    ).rejects.toThrow('undo')
    expect(committed.orders()).toEqual([])
    expect(committed.events()).toEqual([])
    await store.transaction(async () => {
      await orm.insertInto('orders').values({ id: 3, total: 2 }).execute()
      await store.outbox.findOrCreate(event('order-3'))
    })
    expect(committed.orders()).toEqual([3])
    expect(committed.events()).toEqual(['order-3'])
  })

  it('has exactly one side effect when the inbox writes run in the Kysely transaction under redelivery', async () => {
    const { store, orm, committed } = await setup()
    const delivery = { ...event('in-1'), stream: 'ORDERS', streamSeq: 1 }
    let crash = true
    const deliver = () =>
      orm.transaction().execute(async (trx) => {
        const tx = await kyselyTransaction(trx)
        const { shouldProcess } = await store.inbox.claim(delivery, { workerId: 'w', ...LEASE })
        if (!shouldProcess) return
        await trx.insertInto('orders').values({ id: 10, total: 5 }).execute()
        await store.inbox.markAsProcessed(delivery.eventId, { tx })
        if (crash) throw new Error('crashed before commit')
      })
    await expect(deliver()).rejects.toThrow('crashed before commit')
    crash = false
    await deliver()
    await deliver()
    expect(committed.orders()).toEqual([10])
    expect(await store.inbox.isProcessed('in-1')).toBe(true)
  })

  it('refuses bad handles before any write', async () => {
    const { file, store, orm, committed } = await setup()
    await expect(kyselyTransaction(orm as unknown as Transaction<Schema>)).rejects.toThrow(
      /expected a Kysely transaction .*; got a Kysely instance outside a transaction/,
    )
    await expect(kyselyTransaction(new Database(':memory:') as never)).rejects.toThrow(
      /expected a Kysely transaction .*; got a Database/,
    )
    let ended: Transaction<Schema> | undefined
    await orm.transaction().execute(async (trx) => {
      ended = trx
    })
    await expect(kyselyTransaction(ended as Transaction<Schema>)).rejects.toThrow(/committed or rolled back/)

    // Kysely on another connection to the same file, on which no store was created.
    const other = new Kysely<Schema>({ dialect: new SqliteDialect({ database: new Database(file) }) })
    await other.transaction().execute(async (trx) => {
      await expect(kyselyTransaction(trx)).rejects.toThrow(/does not run on the store's connection/)
    })
    // Kysely on the connection of another store: found, then refused by this store.
    const second = new Database(file)
    createSqliteStore({ db: second })
    const onSecond = new Kysely<Schema>({ dialect: new SqliteDialect({ database: second }) })
    await onSecond.transaction().execute(async (trx) => {
      const tx = await kyselyTransaction(trx)
      expect(tx).toBe(second)
      await expect(store.outbox.findOrCreate(event('foreign'), { tx })).rejects.toThrow(
        /tx must be the better-sqlite3 Database this store was created with/,
      )
    })
    expect(committed.events()).toEqual([])
  })
})
