import { randomBytes } from 'node:crypto'
import { ValidationError } from '@txbox/core'
import type { Pool, PoolConnection } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { MySqlStore, MySqlTransaction } from '../src/index.js'
import { freshStore, MYSQL_URL, makePool, SKIP, SKIP_REASON } from './helpers.js'

const event = (eventId: string) => ({ eventId, subject: 's', payload: 'p' })

describe.skipIf(SKIP)(`{ tx } as a mysql2 connection${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  let pool: Pool
  let store: MySqlStore
  let drop: () => Promise<void>

  beforeAll(async () => {
    pool = makePool({ connectionLimit: 4 })
    ;({ store, drop } = await freshStore(pool))
  })
  afterAll(async () => {
    await drop()
    await pool.end()
  })

  /** Runs an enqueue and a processed mark through `tx`; both must be refused and write nothing. */
  const refused = async (tx: unknown, message: RegExp) => {
    await store.inbox.claim(event('in-refused'), { leaseMs: 60_000, workerId: 'w' })
    const id = `e-${randomBytes(4).toString('hex')}`
    const error = await store.outbox
      .findOrCreate(event(id), { tx: tx as MySqlTransaction })
      .catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(ValidationError)
    expect((error as Error).message).toMatch(/^\[txbox\] \[mysql\] /)
    expect((error as Error).message).toMatch(message)
    expect(await store.outbox.get(id)).toBeNull()
    await expect(
      store.inbox.markAsProcessed('in-refused', { tx: tx as MySqlTransaction }),
    ).rejects.toBeInstanceOf(ValidationError)
    expect((await store.inbox.get('in-refused'))?.status).toBe('processing')
  }

  const withConnection = async (run: (connection: PoolConnection) => Promise<void>) => {
    const connection = await pool.getConnection()
    try {
      await run(connection)
    } finally {
      await connection.rollback()
      connection.release()
    }
  }

  it('refuses the Pool itself (its statements would autocommit)', async () => {
    await refused(pool, /tx is the mysql2 Pool itself/)
  })

  it('refuses a connection that never began a transaction, before writing', async () => {
    await withConnection((connection) =>
      refused(connection, /tx \(the mysql2 connection \(thread \d+\)\) is not inside a transaction/),
    )
  })

  it('refuses a connection whose transaction already committed or rolled back', async () => {
    await withConnection(async (connection) => {
      await connection.beginTransaction()
      await connection.commit()
      await refused(connection, /is not inside a transaction/)
      await connection.beginTransaction()
      await connection.rollback()
      await refused(connection, /is not inside a transaction/)
    })
  })

  it("refuses store.transaction's connection kept past the end of fn", async () => {
    let kept: PoolConnection | undefined
    await store.transaction(async (connection) => {
      kept = connection
    })
    // Back in the pool, idle: a write through it would autocommit.
    await refused(kept, /is not inside a transaction/)
  })

  it("refuses other libraries' objects, naming them and what to pass instead", async () => {
    const knexLike = Object.assign(() => undefined, {
      isTransaction: true,
      isCompleted: () => false,
      client: {},
    })
    await refused(knexLike, /tx is a Knex transaction, not a mysql2 connection: wrap it: .*knexTransaction/)
    await refused({ getTransactionStatus: () => 'T', query: () => undefined }, /tx is a PostgreSQL client/)
    await refused({ queryRunner: {}, getRepository: () => undefined }, /typeormTransaction\(manager\)/)
    await refused(
      { $queryRawUnsafe: () => undefined },
      /tx is a Prisma client or transaction.*prismaTransaction\(tx\)/,
    )
    await refused('connection', /tx must be a mysql2\/promise connection .*; got a string$/)
    await refused(new Map(), /got a Map/)
  })

  it('refuses a connection to another database, naming both', async () => {
    const database = `txbox_other_${randomBytes(4).toString('hex')}`
    await pool.query(`CREATE DATABASE \`${database}\``)
    const url = new URL(MYSQL_URL as string)
    url.pathname = `/${database}`
    const other = makePool({ uri: url.toString(), connectionLimit: 1 })
    try {
      const connection = await other.getConnection()
      await connection.beginTransaction()
      await refused(connection, new RegExp(`database ${database}, but the store writes to .*database `))
      await connection.rollback()
      connection.release()
    } finally {
      await other.end()
      await pool.query(`DROP DATABASE \`${database}\``)
    }
  })

  it("takes a connection of the store's pool in a transaction, and the callback API's connection too", async () => {
    await withConnection(async (connection) => {
      await connection.beginTransaction()
      await store.outbox.findOrCreate(event('e-promise'), { tx: connection })
      // mysql2's callback connection under the same session.
      await store.outbox.findOrCreate(event('e-callback'), {
        tx: connection.connection as unknown as MySqlTransaction,
      })
      await connection.commit()
    })
    expect((await store.outbox.get('e-promise'))?.status).toBe('pending')
    expect((await store.outbox.get('e-callback'))?.status).toBe('pending')
  })

  // Once the store knows the server has @@in_transaction (MariaDB), a raw connection is not
  // asked (`DO 0`) before an enqueue: its INSERT fails outside a transaction and writes nothing.
  it('checks a raw connection with its INSERT on MariaDB, refusing it outside a transaction all the same', async () => {
    await store.outbox.findOrCreate(event('e-warm-up'))
    const [[server]] = (await pool.query('SELECT VERSION() AS v')) as unknown as [[{ v: string }]]
    const mariadb = /mariadb/i.test(String(server?.v))
    await withConnection(async (connection) => {
      const query = vi.spyOn(connection, 'query')
      const execute = vi.spyOn(connection, 'execute')
      try {
        // A stored id too: the guard is evaluated before the duplicate key is met.
        for (const ids of [['g-1'], ['g-2', 'g-3', 'g-4'], ['e-warm-up']]) {
          const error = await store.outbox
            .findOrCreateMany(ids.map(event), { tx: connection })
            .catch((caught: unknown) => caught)
          expect(error).toBeInstanceOf(ValidationError)
          expect((error as Error).message).toMatch(/is not inside a transaction/)
        }
        await connection.beginTransaction()
        query.mockClear()
        execute.mockClear()
        await store.outbox.findOrCreateMany(['g-5', 'g-6'].map(event), { tx: connection })
        // One INSERT on MariaDB; MySQL 8 asks first (DO 0).
        expect(query).toHaveBeenCalledTimes(mariadb ? 0 : 1)
        expect(execute).toHaveBeenCalledTimes(1)
        await connection.commit()
        // autocommit off: every statement is inside a transaction, also without BEGIN.
        await connection.query('SET autocommit = 0')
        try {
          await store.outbox.findOrCreate(event('g-7'), { tx: connection })
          await connection.commit()
        } finally {
          await connection.query('SET autocommit = 1')
        }
      } finally {
        query.mockRestore()
        execute.mockRestore()
      }
    })
    for (const id of ['g-1', 'g-2', 'g-3', 'g-4']) expect(await store.outbox.get(id)).toBeNull()
    for (const id of ['g-5', 'g-6', 'g-7']) expect((await store.outbox.get(id))?.status).toBe('pending')
  })

  // The same for keyed events: the counters' upsert comes first, so it carries the check, and
  // outside a transaction neither a counter nor an event is written.
  it('checks a raw connection with its counter upsert on MariaDB, refusing it outside a transaction all the same', async () => {
    await store.outbox.findOrCreate({ ...event('k-warm-up'), orderingKey: 'k-a' })
    const [[server]] = (await pool.query('SELECT VERSION() AS v')) as unknown as [[{ v: string }]]
    const mariadb = /mariadb/i.test(String(server?.v))
    const counters = `\`${store.tablePrefix}outbox_keys\``
    const counter = async (key: string): Promise<number | undefined> => {
      const [rows] = (await pool.query(`SELECT last_seq FROM ${counters} WHERE ordering_key = ?`, [
        key,
      ])) as unknown as [{ last_seq: string | number }[]]
      return rows[0] === undefined ? undefined : Number(rows[0].last_seq)
    }
    const keyed = (eventId: string, orderingKey: string) => ({ ...event(eventId), orderingKey })
    await withConnection(async (connection) => {
      const query = vi.spyOn(connection, 'query')
      const execute = vi.spyOn(connection, 'execute')
      try {
        // One key (the LAST_INSERT_ID statement) and several (RETURNING), known and new keys,
        // and a stored id.
        for (const batch of [
          [keyed('kg-1', 'k-a')],
          [keyed('kg-2', 'k-new')],
          [keyed('kg-3', 'k-a'), keyed('kg-4', 'k-b'), keyed('kg-5', 'k-a')],
          [keyed('k-warm-up', 'k-a')],
        ]) {
          const error = await store.outbox
            .findOrCreateMany(batch, { tx: connection })
            .catch((caught: unknown) => caught)
          expect(error).toBeInstanceOf(ValidationError)
          expect((error as Error).message).toMatch(/is not inside a transaction/)
        }
        expect(await counter('k-a')).toBe(1)
        expect(await counter('k-new')).toBeUndefined()
        expect(await counter('k-b')).toBeUndefined()
        await connection.beginTransaction()
        query.mockClear()
        execute.mockClear()
        const one = await store.outbox.findOrCreate(keyed('kg-6', 'k-a'), { tx: connection })
        const many = await store.outbox.findOrCreateMany(
          [keyed('kg-7', 'k-b'), keyed('kg-8', 'k-a'), keyed('kg-9', 'k-b')],
          { tx: connection },
        )
        // Counters and INSERT per call on MariaDB; MySQL 8 asks first (DO 0, each call) and
        // reads the counters of several keys back.
        expect(query).toHaveBeenCalledTimes(mariadb ? 0 : 2)
        expect(execute).toHaveBeenCalledTimes(mariadb ? 4 : 5)
        expect(one.keySeq).toBe(2)
        expect(many.map((stored) => stored.keySeq)).toEqual([1, 3, 2])
        await connection.commit()
        // autocommit off: every statement is inside a transaction, also without BEGIN.
        await connection.query('SET autocommit = 0')
        try {
          await store.outbox.findOrCreateMany([keyed('kg-10', 'k-a'), keyed('kg-11', 'k-c')], {
            tx: connection,
          })
          await store.outbox.findOrCreate(keyed('kg-12', 'k-a'), { tx: connection })
          await connection.commit()
        } finally {
          await connection.query('SET autocommit = 1')
        }
      } finally {
        query.mockRestore()
        execute.mockRestore()
      }
    })
    for (const id of ['kg-1', 'kg-2', 'kg-3', 'kg-4', 'kg-5']) expect(await store.outbox.get(id)).toBeNull()
    const stored = await Promise.all(
      ['kg-6', 'kg-7', 'kg-8', 'kg-9', 'kg-10', 'kg-11', 'kg-12'].map((id) => store.outbox.get(id)),
    )
    expect(stored.map((found) => [found?.orderingKey, found?.keySeq])).toEqual([
      ['k-a', 2],
      ['k-b', 1],
      ['k-a', 3],
      ['k-b', 2],
      ['k-a', 4],
      ['k-c', 1],
      ['k-a', 5],
    ])
    expect([await counter('k-a'), await counter('k-b'), await counter('k-c')]).toEqual([5, 2, 1])
  })
})
