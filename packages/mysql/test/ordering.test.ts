import { ManualClock, type OutboxEvent } from '@txbox/core'
import { createPool, type Pool, type PoolConnection, type RowDataPacket } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMySqlStore, type MySqlStore } from '../src/index.js'
import type { RetryEvent } from '../src/mysql-options.js'
import { outboxSql } from '../src/sql.js'
import { freshPrefix } from './helpers.js'

// Ordering keys on both server families: MariaDB and MySQL 8 differ in how a locking read
// treats its subqueries and in the optimizer's plan of the head check, so each runs here.
const SERVERS = [
  ['MariaDB', process.env.TXBOX_MYSQL_URL, 'TXBOX_MYSQL_URL'],
  ['MySQL 8', process.env.TXBOX_MYSQL8_URL, 'TXBOX_MYSQL8_URL'],
] as const
const REQUIRE_ALL = process.env.TXBOX_REQUIRE_ALL === '1'

const START = Date.UTC(2026, 0, 1)
const lease = { limit: 50, leaseMs: 60_000, workerId: 'w1' }
const ev = (eventId: string, orderingKey?: string) => ({
  eventId,
  subject: 's',
  payload: eventId,
  ...(orderingKey === undefined ? {} : { orderingKey }),
})
const ids = (events: readonly OutboxEvent[]) => events.map((event) => event.eventId)

/**
 * Polls (with a deadline) until another session is executing an upsert of `table` (the key
 * counters): a one-row statement still running is one waiting for the row lock.
 */
const untilSomeoneWaits = async (pool: Pool, table: string): Promise<void> => {
  const deadline = Date.now() + 20_000
  for (;;) {
    const [rows] = await pool.query<RowDataPacket[]>(
      "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE id <> CONNECTION_ID() AND info LIKE 'INSERT INTO%' AND LOCATE(?, info) > 0",
      [table],
    )
    if (Number(rows[0]?.n) > 0) return
    if (Date.now() > deadline) throw new Error(`no session started waiting on ${table} within 20 s`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

for (const [server, url, variable] of SERVERS) {
  const skip = url === undefined && !REQUIRE_ALL
  describe.skipIf(skip)(
    `ordering keys on ${server}${skip ? ` (skipped: ${variable} is not set)` : ''}`,
    () => {
      let pool: Pool
      let store: MySqlStore
      let clock: ManualClock
      const retries: RetryEvent[] = []
      const stores: MySqlStore[] = []

      const fresh = async (): Promise<MySqlStore> => {
        clock = new ManualClock(START)
        const created = createMySqlStore({
          pool,
          tablePrefix: freshPrefix(),
          clock: clock.now,
          onRetry: (event) => retries.push(event),
        })
        await created.migrate()
        stores.push(created)
        return created
      }

      const inTransaction = async <T>(run: (connection: PoolConnection) => Promise<T>) => {
        const connection = await pool.getConnection()
        await connection.beginTransaction()
        return { connection, result: run(connection) }
      }

      beforeAll(async () => {
        if (url === undefined) throw new Error(`TXBOX_REQUIRE_ALL=1 but ${variable} is not set`)
        pool = createPool({ uri: url, connectionLimit: 8, charset: 'utf8mb4_bin' })
      })

      afterAll(async () => {
        for (const s of stores) {
          const p = s.tablePrefix
          await pool.query(
            `DROP TABLE IF EXISTS \`${p}outbox\`, \`${p}outbox_keys\`, \`${p}inbox\`, \`${p}schema_version\``,
          )
        }
        await pool?.end()
      })

      it('numbers each key in input order, keys exact (case, trailing space free, any Unicode), on every read path', async () => {
        store = await fresh()
        const stored = await store.outbox.findOrCreateMany([
          ev('a1', 'A'),
          ev('u1'),
          ev('x1', 'a'),
          ev('a2', 'A'),
          ev('e1', '🧾 order-é'),
          ev('a3', 'A'),
        ])
        expect(stored.map((event) => [event.eventId, event.orderingKey, event.keySeq])).toEqual([
          ['a1', 'A', 1],
          ['u1', undefined, undefined],
          ['x1', 'a', 1],
          ['a2', 'A', 2],
          ['e1', '🧾 order-é', 1],
          ['a3', 'A', 3],
        ])
        expect(stored[1]).not.toHaveProperty('orderingKey')
        expect(await store.outbox.findOrCreate(ev('a4', 'A'))).toMatchObject({ orderingKey: 'A', keySeq: 4 })
        // What the store answered is what it stored.
        for (const event of stored) expect(await store.outbox.get(event.eventId)).toEqual(event)
        expect((await store.outbox.findPending()).map((e) => [e.eventId, e.keySeq])).toEqual([
          ['a1', 1],
          ['u1', undefined],
          ['x1', 1],
          ['a2', 2],
          ['e1', 1],
          ['a3', 3],
          ['a4', 4],
        ])
        // One head per key: a1, x1, e1, and the unkeyed u1.
        const claimed = await store.outbox.claim(lease)
        expect(claimed.map((e) => [e.eventId, e.orderingKey, e.keySeq])).toEqual([
          ['a1', 'A', 1],
          ['u1', undefined, undefined],
          ['x1', 'a', 1],
          ['e1', '🧾 order-é', 1],
        ])
        await store.outbox.markAsFailed('x1', 'boom', { workerId: 'w1' })
        expect(
          (await store.outbox.getFailedEvents()).map((e) => [e.eventId, e.orderingKey, e.keySeq]),
        ).toEqual([['x1', 'a', 1]])
      })

      it('an autocommitted batch of several keys: no SET TRANSACTION; MariaDB takes the numbers in one statement (RETURNING, padding row included), MySQL reads them back', async () => {
        store = await fresh()
        await store.outbox.findOrCreate(ev('k8-0', 'k8'))
        await store.serverMaxEventBytes()
        // Every statement sent on a connection the store takes from the pool.
        const sent: string[] = []
        const getConnection = pool.getConnection.bind(pool)
        pool.getConnection = async () => {
          const connection = await getConnection()
          for (const method of ['query', 'execute'] as const) {
            const original = connection[method].bind(connection) as (...args: unknown[]) => unknown
            ;(connection as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
              const sql = typeof args[0] === 'string' ? args[0] : (args[0] as { sql: string }).sql
              sent.push(sql.slice(0, 30))
              return original(...args)
            }
          }
          return connection
        }
        let stored: OutboxEvent[]
        try {
          // Nine keys, the last one (k8) twice: the counter upsert is padded to ten rows.
          stored = await store.outbox.findOrCreateMany([
            ...Array.from({ length: 9 }, (_, i) => ev(`k${i}-1`, `k${i}`)),
            ev('k8-2', 'k8'),
          ])
        } finally {
          pool.getConnection = getConnection
        }
        expect(stored.map((event) => [event.eventId, event.keySeq])).toEqual([
          ...Array.from({ length: 8 }, (_, i) => [`k${i}-1`, 1]),
          ['k8-1', 2],
          ['k8-2', 3],
        ])
        for (const event of stored) expect(await store.outbox.get(event.eventId)).toEqual(event)
        const statements = sent.map((sql) => sql.split(' ').slice(0, 3).join(' '))
        expect(statements).not.toContain('SET TRANSACTION ISOLATION')
        const counterReads = sent.filter((sql) => sql.startsWith('SELECT ordering_key')).length
        expect(counterReads).toBe(server === 'MariaDB' ? 0 : 1)
      })

      it('a duplicate id keeps its stored keySeq; the key goes on after a gap', async () => {
        store = await fresh()
        await store.outbox.findOrCreate(ev('d1', 'K'))
        const again = await store.outbox.findOrCreateMany([ev('d1', 'K'), ev('d2', 'K')])
        expect(again.map((e) => [e.eventId, e.keySeq])).toEqual([
          ['d1', 1],
          ['d2', 3],
        ])
        // Even under another key: first write wins.
        expect(await store.outbox.findOrCreate(ev('d1', 'other'))).toMatchObject({
          orderingKey: 'K',
          keySeq: 1,
        })
        expect(await store.outbox.get('d2')).toMatchObject({ keySeq: 3 })
      })

      it('keeps counting after cleanup deleted every event of the key', async () => {
        store = await fresh()
        await store.outbox.findOrCreateMany([ev('c1', 'K'), ev('c2', 'K')])
        for (let i = 0; i < 2; i++) {
          const [head] = await store.outbox.claim(lease)
          await store.outbox.markAsSent(head?.eventId ?? '', { workerId: 'w1' })
        }
        clock.advance(3 * 86_400_000)
        expect(await store.outbox.cleanup(1)).toBe(2)
        expect(await store.outbox.findOrCreate(ev('c3', 'K'))).toMatchObject({ keySeq: 3 })
      })

      it('claims the next event of a key only once the head is sent: retry, expired lease, dead letter block / skip', async () => {
        store = await fresh()
        await store.outbox.findOrCreateMany([ev('h1', 'K'), ev('h2', 'K'), ev('h3', 'K'), ev('o1', 'L')])
        expect(ids(await store.outbox.claim(lease))).toEqual(['h1', 'o1'])
        // Nothing more while h1 is publishing.
        expect(await store.outbox.claim(lease)).toEqual([])
        // A retry with backoff keeps the key blocked, due or not.
        await store.outbox.retryLater('h1', { errorMessage: 'nak', delayMs: 5_000, workerId: 'w1' })
        expect(await store.outbox.claim(lease)).toEqual([])
        clock.advance(5_000)
        expect(ids(await store.outbox.claim({ ...lease, leaseMs: 1_000 }))).toEqual(['h1'])
        // An expired lease makes the same event claimable again, never the next one.
        clock.advance(1_000)
        expect(ids(await store.outbox.claim({ ...lease, workerId: 'w2' }))).toEqual(['h1'])
        await store.outbox.markAsSent('h1', { workerId: 'w2' })
        expect(ids(await store.outbox.claim(lease))).toEqual(['h2'])
        await store.outbox.markAsFailed('h2', 'poison', { workerId: 'w1' })
        // A dead letter holds its key by default, not with 'skip'.
        expect(await store.outbox.claim(lease)).toEqual([])
        expect(await store.outbox.claim({ ...lease, keyedDeadLetters: 'block' })).toEqual([])
        expect(ids(await store.outbox.claim({ ...lease, keyedDeadLetters: 'skip' }))).toEqual(['h3'])
      })

      it('serializes two transactions enqueuing one key: the second waits, numbers follow commit order, claims see a closed prefix', async () => {
        store = await fresh()
        const first = await inTransaction((connection) =>
          store.outbox.findOrCreate(ev('t1', 'K'), { tx: connection }),
        )
        expect(await first.result).toMatchObject({ keySeq: 1 })
        // A second enqueue of K, in the store's own transaction, waits for the first to end.
        let secondDone = false
        const second = store.outbox.findOrCreate(ev('t2', 'K')).then((event) => {
          secondDone = true
          return event
        })
        await untilSomeoneWaits(pool, `${store.tablePrefix}outbox_keys`)
        expect(secondDone).toBe(false)
        // Another key is not held up.
        expect(await store.outbox.findOrCreate(ev('other', 'L'))).toMatchObject({ keySeq: 1 })
        // Neither event of K is visible yet.
        expect(ids(await store.outbox.claim(lease))).toEqual(['other'])
        await first.connection.commit()
        first.connection.release()
        expect(await second).toMatchObject({ eventId: 't2', keySeq: 2 })
        expect(ids(await store.outbox.claim(lease))).toEqual(['t1'])
        await store.outbox.markAsSent('t1', { workerId: 'w1' })
        expect(ids(await store.outbox.claim(lease))).toEqual(['t2'])
      })

      // After the store's first write, a raw connection's keyed enqueue on MariaDB is checked by
      // its guarded counter upsert (no DO 0 first): that statement is the one that waits.
      it('serializes two raw-connection transactions sharing keys across several keys: the later waits on the shared counter, numbers follow commit order', async () => {
        store = await fresh()
        await store.outbox.findOrCreate(ev('warm-up'))
        const first = await inTransaction((connection) =>
          store.outbox.findOrCreateMany([ev('a1', 'K1'), ev('a2', 'K2'), ev('a3', 'K1')], { tx: connection }),
        )
        expect((await first.result).map((event) => event.keySeq)).toEqual([1, 1, 2])
        let secondDone = false
        const second = await inTransaction((connection) =>
          store.outbox
            .findOrCreateMany([ev('b1', 'K3'), ev('b2', 'K2'), ev('b3', 'K3')], { tx: connection })
            .then((events) => {
              secondDone = true
              return events
            }),
        )
        await untilSomeoneWaits(pool, `${store.tablePrefix}outbox_keys`)
        expect(secondDone).toBe(false)
        // Nothing of either transaction is visible yet.
        expect(ids(await store.outbox.claim(lease))).toEqual(['warm-up'])
        await first.connection.commit()
        first.connection.release()
        expect((await second.result).map((event) => [event.eventId, event.keySeq])).toEqual([
          ['b1', 1],
          ['b2', 2],
          ['b3', 2],
        ])
        expect(ids(await store.outbox.claim(lease))).toEqual(['a1', 'a2'])
        await second.connection.commit()
        second.connection.release()
        await store.outbox.markManyAsSent(['a1', 'a2'], { workerId: 'w1' })
        expect(ids(await store.outbox.claim(lease))).toEqual(['a3', 'b1', 'b2'])
      })

      it('a rolled back enqueue leaves no event and no number in use; the waiting one goes on', async () => {
        store = await fresh()
        const first = await inTransaction((connection) =>
          store.outbox.findOrCreateMany([ev('r1', 'K'), ev('r2', 'K')], { tx: connection }),
        )
        expect((await first.result).map((e) => e.keySeq)).toEqual([1, 2])
        const second = store.outbox.findOrCreate(ev('r3', 'K'))
        await untilSomeoneWaits(pool, `${store.tablePrefix}outbox_keys`)
        await first.connection.rollback()
        first.connection.release()
        const stored = await second
        expect(stored.keySeq).toBeGreaterThan(0)
        expect(await store.outbox.get('r1')).toBeNull()
        expect(ids(await store.outbox.claim(lease))).toEqual(['r3'])
      })

      it('batches with overlapping keys in opposite orders never deadlock, and give each key 1..n', async () => {
        store = await fresh()
        retries.length = 0
        const keys = Array.from({ length: 12 }, (_, i) => `key-${i}`)
        const rounds = 6
        const writers = Array.from({ length: 6 }, async (_, writer) => {
          for (let round = 0; round < rounds; round++) {
            const order = writer % 2 === 0 ? keys : [...keys].reverse()
            await store.outbox.findOrCreateMany(order.map((key) => ev(`${writer}-${round}-${key}`, key)))
          }
        })
        await Promise.all(writers)
        expect(retries).toEqual([])
        const [rows] = await pool.query<RowDataPacket[]>(
          `SELECT ordering_key AS k, COUNT(*) AS n, COUNT(DISTINCT key_seq) AS d, MIN(key_seq) AS lo, MAX(key_seq) AS hi
           FROM \`${store.tablePrefix}outbox\` GROUP BY ordering_key ORDER BY ordering_key`,
        )
        expect(rows).toHaveLength(keys.length)
        for (const row of rows)
          expect([Number(row.n), Number(row.d), Number(row.lo), Number(row.hi)]).toEqual([36, 36, 1, 36])
      })

      it('a claimer never takes the next event of a key whose head another claimer holds', async () => {
        store = await fresh()
        await store.outbox.findOrCreateMany([ev('k1', 'K'), ev('k2', 'K'), ev('m1', 'M')])
        // A claimer stopped right after its locking read: it holds k1 and m1, not yet marked.
        const holder = await pool.getConnection()
        try {
          await holder.query('SET TRANSACTION ISOLATION LEVEL READ COMMITTED')
          await holder.beginTransaction()
          const sql = outboxSql(`${store.tablePrefix}outbox`, `${store.tablePrefix}outbox_keys`)
          const now = '2026-01-01 00:00:00.000'
          const [locked] = await holder.execute<RowDataPacket[]>(sql.claim.deadLettersBlock, [
            now,
            '10',
            now,
            '10',
          ])
          expect(locked.map((row) => row.event_id)).toEqual(['k1', 'm1'])
          // k1 is skipped (locked), but it is still pending: k2 is not a head.
          expect(await store.outbox.claim(lease)).toEqual([])
        } finally {
          await holder.rollback()
          holder.release()
        }
        expect(ids(await store.outbox.claim(lease))).toEqual(['k1', 'm1'])
      })

      it('checks each candidate in a few index reads, however long the backlog of its key', async () => {
        store = await fresh()
        await store.outbox.findOrCreateMany(Array.from({ length: 400 }, (_, i) => ev(`b${i}`, 'K')))
        await store.outbox.findOrCreate(ev('other', 'L'))
        const sql = outboxSql(`${store.tablePrefix}outbox`, `${store.tablePrefix}outbox_keys`)
        const connection = await pool.getConnection()
        try {
          await connection.query('FLUSH STATUS')
          await connection.beginTransaction()
          const now = '2026-01-01 00:00:00.000'
          const [rows] = await connection.execute<RowDataPacket[]>(sql.claim.deadLettersBlock, [
            now,
            '10',
            now,
            '10',
          ])
          await connection.rollback()
          expect(rows.map((row) => row.event_id)).toEqual(['b0', 'other'])
          const [status] = await connection.query<RowDataPacket[]>(
            "SHOW SESSION STATUS LIKE 'Handler_read_next'",
          )
          // The scan steps over K's 399 waiting events, each checked by reading the first
          // index entry per status; reading all of K's entries per check would be ~160,000.
          expect(Number(status[0]?.Value)).toBeLessThan(4000)
        } finally {
          connection.release()
        }
      })

      it('does not claim a row committed during its scan beside a lower row of its key it could not see', async () => {
        store = await fresh()
        await store.outbox.findOrCreate(ev('early', 'E'))
        const sql = outboxSql(`${store.tablePrefix}outbox`, `${store.tablePrefix}outbox_keys`)
        // The real statement, slowed down after the head check of its first row (a keyed row:
        // its check takes the snapshot the checks read), so that two events of one key commit
        // mid-scan.
        const slowed = sql.claim.deadLettersBlock.replace(
          / ORDER BY o\.seq LIMIT \? FOR UPDATE SKIP LOCKED\)$/,
          " AND (o.event_id <> 'early' OR SLEEP(1) = 0) ORDER BY o.seq LIMIT ? FOR UPDATE SKIP LOCKED)",
        )
        expect(slowed).not.toBe(sql.claim.deadLettersBlock)
        const claimer = await pool.getConnection()
        try {
          await claimer.query('SET TRANSACTION ISOLATION LEVEL READ COMMITTED')
          await claimer.beginTransaction()
          const now = '2026-01-01 00:00:00.000'
          const scan = claimer.execute<RowDataPacket[]>(slowed, [now, '10', now, '10'])
          await new Promise((resolve) => setTimeout(resolve, 300))
          await store.outbox.findOrCreate(ev('n1', 'N'))
          await store.outbox.findOrCreate(ev('n2', 'N'))
          const [rows] = await scan
          const claimed = rows.map((row) => String(row.event_id))
          // n1 may or may not be taken (it is the head), n2 never.
          expect(claimed).toContain('early')
          expect(claimed).not.toContain('n2')
        } finally {
          await claimer.rollback()
          claimer.release()
        }
      })
    },
  )
}
