import Database from 'better-sqlite3'
import { eq } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/better-sqlite3'
import { integer, real, sqliteTable } from 'drizzle-orm/sqlite-core'
import { afterAll, describe, expect, it } from 'vitest'
import { createSqliteStore } from '../src/index.js'
import { drizzleDatabase } from '../src/orm/drizzle.js'
import { event, LEASE, tempDirectory } from './helpers.js'

const temp = tempDirectory()
afterAll(() => temp.cleanup())

const orders = sqliteTable('orders', { id: integer('id').primaryKey(), total: real('total').notNull() })

const setup = async () => {
  const file = temp.file(`drizzle-${Math.random().toString(36).slice(2)}.db`)
  const orm = drizzle(file)
  const store = createSqliteStore({ db: drizzleDatabase(orm) })
  await store.migrate()
  orm.run('CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL NOT NULL)')
  const reader = new Database(file, { readonly: true })
  const committed = {
    orders: () =>
      (reader.prepare('SELECT id FROM orders ORDER BY id').all() as { id: number }[]).map((r) => r.id),
    events: () =>
      (reader.prepare('SELECT event_id FROM txbox_outbox ORDER BY seq').all() as { event_id: string }[]).map(
        (r) => r.event_id,
      ),
  }
  return { orm, store, committed }
}

describe('Drizzle (drizzle-orm/better-sqlite3)', () => {
  it('commits the Drizzle write and the enqueue together in store.transaction, and rolls both back together', async () => {
    const { orm, store, committed } = await setup()
    await store.transaction(async () => {
      orm.insert(orders).values({ id: 1, total: 9.5 }).run()
      await store.outbox.findOrCreate(event('order-1'))
    })
    expect(committed.orders()).toEqual([1])
    expect(committed.events()).toEqual(['order-1'])
    await expect(
      store.transaction(async () => {
        await orm.insert(orders).values({ id: 2, total: 1 })
        await orm.update(orders).set({ total: 0 }).where(eq(orders.id, 1))
        await store.outbox.findOrCreate(event('order-2'))
        throw new Error('declined')
      }),
    ).rejects.toThrow('declined')
    expect(committed.orders()).toEqual([1])
    expect(orm.select().from(orders).all()).toEqual([{ id: 1, total: 9.5 }])
    expect(committed.events()).toEqual(['order-1'])
  })

  it('has exactly one side effect when handler and processed mark share store.transaction under redelivery', async () => {
    const { orm, store, committed } = await setup()
    const delivery = { ...event('in-1'), stream: 'ORDERS', streamSeq: 1 }
    let crash = true
    const deliver = () =>
      store.transaction(async () => {
        const { shouldProcess } = await store.inbox.claim(delivery, { workerId: 'w', ...LEASE })
        if (!shouldProcess) return
        orm.insert(orders).values({ id: 10, total: 5 }).run()
        await store.inbox.markAsProcessed(delivery.eventId)
        if (crash) throw new Error('crashed before commit')
      })
    await expect(deliver()).rejects.toThrow('crashed before commit')
    crash = false
    await deliver()
    await deliver()
    expect(committed.orders()).toEqual([10])
  })

  it("refuses a Drizzle transaction (synchronous: it cannot await txbox) and what is not Drizzle's better-sqlite3 driver", async () => {
    const { orm } = await setup()
    expect(() =>
      orm.transaction((tx) => {
        drizzleDatabase(tx as never)
      }),
    ).toThrow(/a Drizzle better-sqlite3 transaction is synchronous and cannot await txbox/)
    expect(() => drizzleDatabase(new Database(':memory:') as never)).toThrow(
      /expected a Drizzle instance of drizzle-orm\/better-sqlite3; got a Database/,
    )
    expect(() => drizzleDatabase({ $client: new Database(':memory:') } as never)).toThrow(
      /expected a Drizzle instance .*; got a plain object/,
    )
    // better-sqlite3 itself refuses an async Drizzle transaction, so the pattern above is the only one.
    expect(() => orm.transaction(async () => {})).toThrow(/cannot return a promise/)
  })
})
