import { ValidationError } from '@txbox/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgresQueryHandle } from '../src/index.js'
import { createNamespace, event, inTransaction, type Namespace, noServer, skipReason } from './helpers.js'

describe.skipIf(noServer)(`{ tx }${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  let ns: Namespace
  const orders = () => `"${ns.schema}".orders`

  beforeAll(async () => {
    ns = await createNamespace()
    await ns.pool.query(`CREATE TABLE ${orders()} (id text PRIMARY KEY)`)
  })
  afterAll(async () => {
    await ns?.dispose()
  })

  const count = async (table: string, id: string, column = 'id') =>
    (await ns.pool.query(`SELECT 1 FROM ${table} WHERE ${column} = $1`, [id])).rowCount

  it('an enqueue rolled back with the business write leaves no trace; committed, both are there', async () => {
    const { outbox } = ns.store
    await expect(
      inTransaction(ns.pool, async (client) => {
        await client.query(`INSERT INTO ${orders()} (id) VALUES ('o1')`)
        await outbox.findOrCreate(event('e1'), { tx: client })
        await outbox.findOrCreateMany([event('e2'), event('e3')], { tx: client })
        throw new Error('business rule failed')
      }),
    ).rejects.toThrow('business rule failed')
    expect(await count(orders(), 'o1')).toBe(0)
    expect(await outbox.get('e1')).toBeNull()
    expect(await outbox.get('e2')).toBeNull()

    await inTransaction(ns.pool, async (client) => {
      await client.query(`INSERT INTO ${orders()} (id) VALUES ('o2')`)
      const created = await outbox.findOrCreate(event('e4'), { tx: client })
      expect(created.status).toBe('pending')
      // Not visible outside the transaction before COMMIT.
      expect(await outbox.get('e4')).toBeNull()
    })
    expect(await count(orders(), 'o2')).toBe(1)
    expect((await outbox.get('e4'))?.status).toBe('pending')
  })

  it('inside { tx }, a duplicate id answers the stored event (first write wins), new ones their own', async () => {
    await ns.store.outbox.findOrCreate({ ...event('tx-dup-1'), payload: 'first' })
    const stored = await ns.store.outbox.get('tx-dup-1')
    const [single, batch] = await inTransaction(ns.pool, async (client) => [
      await ns.store.outbox.findOrCreate({ ...event('tx-dup-1'), payload: 'second' }, { tx: client }),
      await ns.store.outbox.findOrCreateMany(
        [
          { ...event('tx-dup-2'), payload: 'new' },
          { ...event('tx-dup-1'), payload: 'third' },
        ],
        { tx: client },
      ),
    ])
    expect(single).toEqual(stored)
    expect(batch[1]).toEqual(stored)
    expect(batch[0]?.payload).toBe('new')
    expect(batch[0]).toEqual(await ns.store.outbox.get('tx-dup-2'))
  })

  it("the inbox's processed mark commits or rolls back with the handler's writes", async () => {
    const { inbox } = ns.store
    const claimed = await inbox.claim(event('in-1'), { leaseMs: 30_000, workerId: 'w' })
    expect(claimed.shouldProcess).toBe(true)
    await inTransaction(
      ns.pool,
      async (client) => {
        await client.query(`INSERT INTO ${orders()} (id) VALUES ('from-in-1')`)
        await inbox.markAsProcessed('in-1', { tx: client })
      },
      'ROLLBACK',
    )
    expect(await inbox.isProcessed('in-1')).toBe(false)
    expect(await count(orders(), 'from-in-1')).toBe(0)

    await inTransaction(ns.pool, async (client) => {
      await client.query(`INSERT INTO ${orders()} (id) VALUES ('from-in-1')`)
      await inbox.markAsProcessed('in-1', { tx: client })
    })
    expect(await inbox.isProcessed('in-1')).toBe(true)
    expect(await count(orders(), 'from-in-1')).toBe(1)
  })

  it('refuses the Pool, or a client outside BEGIN, as tx (it would autocommit)', async () => {
    const { outbox } = ns.store
    await expect(outbox.findOrCreate(event('bad-1'), { tx: ns.pool as never })).rejects.toThrow(
      ValidationError,
    )
    const client = await ns.pool.connect()
    try {
      await expect(outbox.findOrCreate(event('bad-2'), { tx: client })).rejects.toThrow(/BEGIN/)
    } finally {
      client.release()
    }
    expect(await outbox.get('bad-1')).toBeNull()
    expect(await outbox.get('bad-2')).toBeNull()
  })

  it('a pg without getTransactionStatus (8.20 and older): the server says whether the client is inside BEGIN', async () => {
    const { outbox } = ns.store
    const client = await ns.pool.connect()
    // What a client of an older pg looks like (MikroORM 6 brings pg 8.20).
    Object.defineProperty(client, 'getTransactionStatus', { value: undefined, configurable: true })
    try {
      await expect(outbox.findOrCreate(event('old-pg-1'), { tx: client })).rejects.toThrow(
        /not inside a transaction/,
      )
      await client.query('BEGIN')
      await outbox.findOrCreate(event('old-pg-2'), { tx: client })
      await client.query('ROLLBACK')
    } finally {
      delete (client as { getTransactionStatus?: unknown }).getTransactionStatus
      client.release()
    }
    expect(await outbox.get('old-pg-1')).toBeNull()
    expect(await outbox.get('old-pg-2')).toBeNull()
  })

  it('postgresQueryHandle plugs in another driver: the statements run in its transaction, its assertOpen before any I/O', async () => {
    const { outbox } = ns.store
    const client = await ns.pool.connect()
    let open = true
    const statements: string[] = []
    const handle = postgresQueryHandle({
      description: 'a hand-made handle',
      session: client,
      assertOpen: () => {
        if (!open) throw new ValidationError('postgres', 'the hand-made transaction is closed')
      },
      query: async (statement) => {
        statements.push(statement.text)
        const result = await client.query(statement.text, [...statement.values])
        return { rows: result.rows, rowCount: result.rowCount }
      },
    })
    try {
      await client.query('BEGIN')
      const created = await outbox.findOrCreate(event('custom-1'), { tx: handle })
      expect(created.status).toBe('pending')
      expect(await outbox.get('custom-1')).toBeNull()
      await client.query('ROLLBACK')
      expect(await outbox.get('custom-1')).toBeNull()
      expect(statements).toHaveLength(1)

      open = false
      await expect(outbox.findOrCreate(event('custom-2'), { tx: handle })).rejects.toThrow(
        'the hand-made transaction is closed',
      )
      expect(statements).toHaveLength(1)
    } finally {
      client.release()
    }
  })

  it('postgresQueryHandle refuses an incomplete spec, naming what is missing', () => {
    const query = async () => ({ rows: [], rowCount: 0 })
    expect(() => postgresQueryHandle(undefined as never)).toThrow(/needs a spec object; got undefined/)
    expect(() => postgresQueryHandle({ description: '', session: {}, query })).toThrow(
      /non-empty `description`/,
    )
    expect(() => postgresQueryHandle({ description: 'x', session: null as never, query })).toThrow(
      /`session` object/,
    )
    expect(() => postgresQueryHandle({ description: 'x', session: {}, query: 'SELECT' as never })).toThrow(
      /`query\(statement\)` function/,
    )
    expect(() =>
      postgresQueryHandle({ description: 'x', session: {}, query, assertOpen: true as never }),
    ).toThrow(/`assertOpen`, when given, to be a function/)
    expect(postgresQueryHandle({ description: 'x', session: () => undefined, query }).description).toBe('x')
  })
})
