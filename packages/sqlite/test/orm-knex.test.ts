import { ValidationError } from '@txbox/core'
import Database from 'better-sqlite3'
import knexFactory, { type Knex } from 'knex'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { createSqliteStore } from '../src/index.js'
import { knexDatabase, knexTransaction } from '../src/orm/knex.js'
import { event, LEASE, tempDirectory } from './helpers.js'

const temp = tempDirectory()
const open: Knex[] = []
afterEach(async () => {
  for (const knex of open.splice(0)) await knex.destroy()
})
afterAll(() => temp.cleanup())

const setup = async () => {
  const file = temp.file(`knex-${Math.random().toString(36).slice(2)}.db`)
  const knex = knexFactory({
    client: 'better-sqlite3',
    connection: { filename: file },
    useNullAsDefault: true,
  })
  open.push(knex)
  const db = await knexDatabase(knex)
  const store = createSqliteStore({ db })
  await store.migrate()
  await knex.schema.createTable('orders', (table) => {
    table.integer('id').primary()
    table.float('total').notNullable()
  })
  const reader = new Database(file, { readonly: true })
  const committed = {
    orders: () =>
      (reader.prepare('SELECT id FROM orders ORDER BY id').all() as { id: number }[]).map((r) => r.id),
    events: () =>
      (reader.prepare('SELECT event_id FROM txbox_outbox ORDER BY seq').all() as { event_id: string }[]).map(
        (r) => r.event_id,
      ),
  }
  return { file, knex, db, store, committed }
}

describe('Knex (better-sqlite3 client)', () => {
  it('commits the Knex write and the enqueue together in one Knex transaction, and rolls both back together', async () => {
    const { knex, store, committed } = await setup()
    await knex.transaction(async (trx) => {
      await trx('orders').insert({ id: 1, total: 9.5 })
      await store.outbox.findOrCreate(event('order-1'), { tx: await knexTransaction(trx) })
    })
    expect(committed.orders()).toEqual([1])
    expect(committed.events()).toEqual(['order-1'])

    await expect(
      knex.transaction(async (trx) => {
        await trx('orders').insert({ id: 2, total: 1 })
        await store.outbox.findOrCreateMany([event('order-2'), event('order-2b')], {
          tx: await knexTransaction(trx),
        })
        throw new Error('declined')
      }),
    ).rejects.toThrow('declined')
    expect(committed.orders()).toEqual([1])
    expect(committed.events()).toEqual(['order-1'])
  })

  it('runs Knex queries inside store.transaction with .connection(db)', async () => {
    const { knex, store, committed } = await setup()
    await expect(
      store.transaction(async (db) => {
        await knex('orders').insert({ id: 3, total: 2 }).connection(db)
        await store.outbox.findOrCreate(event('order-3'))
        throw new Error('undo')
      }),
    ).rejects.toThrow('undo')
    expect(committed.orders()).toEqual([])
    await store.transaction(async (db) => {
      await knex('orders').insert({ id: 3, total: 2 }).connection(db)
      await store.outbox.findOrCreate(event('order-3'))
    })
    expect(committed.orders()).toEqual([3])
    expect(committed.events()).toEqual(['order-3'])
  })

  it('has exactly one side effect when the inbox writes run in the Knex transaction under redelivery', async () => {
    const { knex, store, committed } = await setup()
    const delivery = { ...event('in-1'), stream: 'ORDERS', streamSeq: 1 }
    let crash = true
    const deliver = () =>
      knex.transaction(async (trx) => {
        const tx = await knexTransaction(trx)
        const { shouldProcess } = await store.inbox.claim(delivery, { workerId: 'w', ...LEASE })
        if (!shouldProcess) return
        await trx('orders').insert({ id: 10, total: 5 })
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
    const { file, knex, store, committed } = await setup()
    await expect(knexTransaction(knex as unknown as Knex.Transaction)).rejects.toThrow(
      /expected a Knex transaction .* got a function|expected a Knex transaction/,
    )
    await expect(knexTransaction({} as Knex.Transaction)).rejects.toThrow(
      /expected a Knex transaction \(the trx of knex\.transaction\(\.\.\.\)\); got a plain object/,
    )
    let ended: Knex.Transaction | undefined
    await knex.transaction(async (trx) => {
      ended = trx
    })
    await expect(knexTransaction(ended as Knex.Transaction)).rejects.toThrow(
      /already been committed or rolled back/,
    )

    // A transaction on another Knex (another connection to the same file) is not the store's.
    const other = knexFactory({
      client: 'better-sqlite3',
      connection: { filename: file },
      useNullAsDefault: true,
    })
    open.push(other)
    await other.transaction(async (trx) => {
      const foreign = await knexTransaction(trx)
      await expect(store.outbox.findOrCreate(event('foreign'), { tx: foreign })).rejects.toThrow(
        /tx must be the better-sqlite3 Database this store was created with/,
      )
    })
    // A Knex on another driver.
    const onPg = knexFactory({ client: 'pg', connection: 'postgres://127.0.0.1:1/none' })
    open.push(onPg)
    await expect(
      knexTransaction(Object.assign(() => {}, { isTransaction: true, client: onPg.client }) as never),
    ).rejects.toThrow(/on the better-sqlite3 client .* got a Knex on pg/)
    await expect(knexDatabase(onPg)).rejects.toBeInstanceOf(ValidationError)
    const pooled = knexFactory({
      client: 'better-sqlite3',
      connection: { filename: file },
      useNullAsDefault: true,
      pool: { min: 0, max: 4 },
    })
    open.push(pooled)
    await expect(knexDatabase(pooled)).rejects.toThrow(/exactly one connection .* got min 0, max 4/)
    expect(committed.events()).toEqual([])
  })
})
