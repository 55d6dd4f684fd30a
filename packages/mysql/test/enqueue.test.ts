import { ManualClock, type OutboxEvent } from '@txbox/core'
import type { Pool, PoolOptions } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMySqlStore, type MySqlStore } from '../src/index.js'
import { countStatements, freshStore, makePool, SKIP, SKIP_REASON } from './helpers.js'

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0, 123)

// The enqueue answers the events it inserted as written and reads back only ids that were
// already stored. Whether a row was inserted is read from the server's answer, whose counts
// depend on the CLIENT_FOUND_ROWS flag (mysql2 sets it by default): both ways are checked.
describe.skipIf(SKIP)(`mysql enqueue answers${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  for (const [flagName, options] of [
    ['CLIENT_FOUND_ROWS (mysql2 default)', {}],
    ['without CLIENT_FOUND_ROWS', { flags: ['-FOUND_ROWS'] }],
  ] as const satisfies readonly (readonly [string, Partial<PoolOptions>])[]) {
    describe(flagName, () => {
      let pool: Pool
      let store: MySqlStore
      let drop: () => Promise<void>
      let selects: () => number
      const clock = new ManualClock(T0)

      beforeAll(async () => {
        pool = makePool({ ...options, connectionLimit: 4 })
        ;({ store, drop } = await freshStore(pool, { clock: clock.now }))
        ;({ selects } = countStatements(pool))
        // The connection check (max_allowed_packet, charset) is read once, before counting.
        await store.serverMaxEventBytes()
      })

      afterAll(async () => {
        await drop?.()
        await pool?.end()
      })

      const expectStored = async (events: readonly OutboxEvent[]) => {
        for (const event of events) expect(await store.outbox.get(event.eventId)).toEqual(event)
      }

      it('answers new events as stored, without reading them back, edge values included', async () => {
        const before = selects()
        const one = await store.outbox.findOrCreate({
          eventId: 'new-1',
          subject: 'orders.created',
          payload: '{"emoji":"😀","quote":"\'","nul":"\u0000"}',
          headers: '',
          availableAt: new Date(Date.UTC(1000, 0, 1, 0, 0, 0, 1)),
        })
        const many = await store.outbox.findOrCreateMany(
          Array.from({ length: 100 }, (_, i) => ({
            eventId: `new-batch-${i}`,
            subject: 's',
            payload: `p${i} \\ 𝄞`,
            ...(i % 2 === 0 ? { headers: `{"h":"${i}"}` } : {}),
            ...(i === 7 ? { availableAt: new Date(Date.UTC(9999, 11, 31, 23, 59, 59, 999)) } : {}),
          })),
        )
        expect(selects() - before).toBe(0)
        expect(one).toMatchObject({ status: 'pending', retryCount: 0, headers: '' })
        expect(one.enqueuedAt.getTime()).toBe(T0)
        expect(many).toHaveLength(100)
        await expectStored([one, ...many])
      })

      it('answers the first stored event for ids already stored, alone or among new ones', async () => {
        const first = await store.outbox.findOrCreate({ eventId: 'dup-1', subject: 's', payload: 'first' })
        clock.advance(1000)
        const again = await store.outbox.findOrCreate({ eventId: 'dup-1', subject: 's2', payload: 'second' })
        expect(again).toEqual(first)
        const mixed = await store.outbox.findOrCreateMany([
          { eventId: 'dup-new-a', subject: 's', payload: 'a' },
          { eventId: 'dup-1', subject: 's3', payload: 'third' },
          { eventId: 'dup-new-b', subject: 's', payload: 'b' },
        ])
        expect(mixed[1]).toEqual(first)
        expect(mixed.map((event) => event.payload)).toEqual(['a', 'first', 'b'])
        // The padded statement (3 rows padded to 4) with its only duplicate in the middle.
        const lastDuplicate = await store.outbox.findOrCreateMany([
          { eventId: 'dup-new-c', subject: 's', payload: 'c' },
          { eventId: 'dup-new-d', subject: 's', payload: 'd' },
          { eventId: 'dup-new-a', subject: 's', payload: 'not a' },
        ])
        expect(lastDuplicate.map((event) => event.payload)).toEqual(['c', 'd', 'a'])
        await expectStored([...mixed, ...lastDuplicate])
      })

      it("answers the stored event inside the caller's transaction after an auto-increment insert of its own", async () => {
        const stored = await store.outbox.findOrCreate({ eventId: 'tx-dup', subject: 's', payload: 'stored' })
        await pool.query(
          `CREATE TABLE \`${store.tablePrefix}ai_seq\` (id BIGINT AUTO_INCREMENT PRIMARY KEY, n INT)`,
        )
        const connection = await pool.getConnection()
        try {
          await connection.beginTransaction()
          // The session's LAST_INSERT_ID is set by the caller's own insert: the enqueue of a
          // stored id must not take it for a row of its own.
          await connection.query(`INSERT INTO \`${store.tablePrefix}ai_seq\` (n) VALUES (1)`)
          const inTx = await store.outbox.findOrCreate(
            { eventId: 'tx-dup', subject: 's', payload: 'other' },
            { tx: connection },
          )
          const fresh = await store.outbox.findOrCreate(
            { eventId: 'tx-new', subject: 's', payload: 'new' },
            { tx: connection },
          )
          expect(inTx).toEqual(stored)
          await connection.commit()
          await expectStored([inTx, fresh])
        } finally {
          connection.release()
          await pool.query(`DROP TABLE \`${store.tablePrefix}ai_seq\``)
        }
      })
    })
  }
})

describe.skipIf(SKIP)(
  `mysql enqueue on a pool its callers hold${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`,
  () => {
    it("enqueues first in transactions that hold every connection of the pool: the server's limits are read on the caller's connection", async () => {
      const pool = makePool({ connectionLimit: 2 })
      const { store, drop } = await freshStore(pool)
      // A fresh store on the same tables: its first enqueue still has to read the server's limits.
      const fresh = createMySqlStore({ pool, tablePrefix: store.tablePrefix })
      const connections = [await pool.getConnection(), await pool.getConnection()]
      try {
        const enqueues = Promise.all(
          connections.map(async (connection, i) => {
            await connection.beginTransaction()
            const event = await fresh.outbox.findOrCreate(
              { eventId: `held-${i}`, subject: 's', payload: 'p' },
              { tx: connection },
            )
            await connection.commit()
            return event
          }),
        )
        // Before the fix both waited for a third connection forever; a deadline makes that a failure.
        let timer: NodeJS.Timeout | undefined
        const deadline = new Promise<'stuck'>((resolve) => {
          timer = setTimeout(() => resolve('stuck'), 10_000)
        })
        const outcome = await Promise.race([enqueues, deadline])
        clearTimeout(timer)
        expect(outcome).not.toBe('stuck')
        expect((outcome as OutboxEvent[]).map((event) => event.eventId)).toEqual(['held-0', 'held-1'])
      } finally {
        for (const connection of connections) connection.release()
        await drop()
        await pool.end()
      }
    })
  },
)
