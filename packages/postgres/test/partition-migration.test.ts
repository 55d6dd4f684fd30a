import { ManualClock } from '@txbox/core'
import { afterAll, describe, expect, it } from 'vitest'
import { createPostgresStore } from '../src/index.js'
import { event, freshSchema, newPool, noServer, skipReason } from './helpers.js'

const DAY = 86_400_000

describe.skipIf(noServer)(
  `converting plain tables to partitioned ones${noServer ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const pool = newPool(4)
    const schemas: string[] = []

    afterAll(async () => {
      for (const schema of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await pool.end()
    })

    /** Every row of a table, every column, in seq order, as the server prints it. */
    const snapshot = async (schema: string, table: 'outbox' | 'inbox') => {
      const result = await pool.query<{ row: Record<string, unknown> }>(
        `SELECT row_to_json(t) AS row FROM "${schema}"."txbox_${table}" t ORDER BY seq`,
      )
      return result.rows.map((r) => r.row)
    }

    const indexNames = async (schema: string, table: string) => {
      const result = await pool.query<{ name: string }>(
        `SELECT indexname AS name FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 ORDER BY indexname`,
        [schema, table],
      )
      return result.rows.map((row) => row.name)
    }

    it('keeps every row in every status, their seq order and their ids, then goes on from the old seq', async () => {
      const schema = freshSchema()
      schemas.push(schema)
      const clock = new ManualClock(Date.UTC(2026, 4, 20, 8))
      const plain = createPostgresStore({ pool, schema, clock: clock.now })
      await plain.migrate()

      // Outbox: three days of history in every status, a retry due later, two claimed.
      for (let day = 0; day < 3; day++) {
        const batch = Array.from({ length: 5 }, (_, i) => `d${day}-${i}`)
        await plain.outbox.findOrCreateMany(batch.map((id) => event(id)))
        clock.advance(DAY)
      }
      await plain.outbox.markAsSent('d0-0')
      await plain.outbox.markAsSent('d0-1')
      await plain.outbox.markAsFailed('d0-2', 'dead letter')
      await plain.outbox.retryLater('d1-0', { errorMessage: 'later', delayMs: 3 * DAY })
      const claimed = await plain.outbox.claim({ limit: 2, leaseMs: 60_000, workerId: 'relay-a' })
      expect(claimed.map((e) => e.eventId)).toEqual(['d0-3', 'd0-4'])
      // Inbox: processed, failed, and one in flight under a lease.
      for (const id of ['m1', 'm2', 'm3'])
        await plain.inbox.findOrCreate({ eventId: id, subject: 's', payload: id })
      await plain.inbox.markAsProcessed('m1')
      await plain.inbox.markAsFailed('m2', 'handler threw')
      await plain.inbox.claim(
        { eventId: 'm4', subject: 's', payload: 'm4' },
        { leaseMs: 60_000, workerId: 'w' },
      )
      // Keyed events: their keySeq and the key's counter carry over.
      await plain.outbox.findOrCreateMany([
        event('key-1', { orderingKey: 'order-7' }),
        event('key-2', { orderingKey: 'order-7' }),
      ])
      // Deleted rows consumed seq values: the partitioned table must not hand them out again.
      await plain.outbox.findOrCreate(event('gone'))
      await plain.outbox.markAsSent('gone')
      clock.advance(8 * DAY)
      expect(await plain.outbox.cleanup(7)).toBe(3)
      await plain.outbox.markAsSent('d2-4')

      const outboxBefore = await snapshot(schema, 'outbox')
      const inboxBefore = await snapshot(schema, 'inbox')
      const maxSeq = Math.max(...outboxBefore.map((row) => Number(row.seq)))
      expect(outboxBefore.map((row) => row.status)).toEqual(
        expect.arrayContaining(['sent', 'failed', 'publishing', 'pending']),
      )
      expect(inboxBefore.map((row) => row.status)).toEqual([
        'processed',
        'failed',
        'processing',
        'processing',
      ])

      const partitioned = createPostgresStore({
        pool,
        schema,
        clock: clock.now,
        partitioning: { interval: 'monthly' },
      })
      await partitioned.migrate()

      // Nothing lost, nothing changed, same order.
      expect(await snapshot(schema, 'outbox')).toEqual(outboxBefore)
      expect(await snapshot(schema, 'inbox')).toEqual(inboxBefore)
      const kinds = await pool.query<{ relname: string; relkind: string }>(
        `SELECT relname, relkind FROM pg_class WHERE relnamespace = $1::regnamespace AND relname IN ('txbox_outbox', 'txbox_inbox') ORDER BY relname`,
        [schema],
      )
      expect(kinds.rows).toEqual([
        { relname: 'txbox_inbox', relkind: 'p' },
        { relname: 'txbox_outbox', relkind: 'p' },
      ])
      // The indexes keep their names on the partitioned table (a later migration may name them).
      expect(await indexNames(schema, 'txbox_outbox')).toEqual(
        expect.arrayContaining([
          'txbox_outbox_claimable_idx',
          'txbox_outbox_sent_idx',
          'txbox_outbox_failed_idx',
          'txbox_outbox_key_head_idx',
          'txbox_outbox_pkey',
          'txbox_outbox_event_id_idx',
        ]),
      )
      expect(await indexNames(schema, 'txbox_inbox')).toEqual(
        expect.arrayContaining([
          'txbox_inbox_processed_idx',
          'txbox_inbox_processing_idx',
          'txbox_inbox_failed_idx',
          'txbox_inbox_pkey',
          'txbox_inbox_event_id_idx',
        ]),
      )

      // The relay picks up where it was, in enqueue order: the expired leases, the retry now
      // due, the pending ones, the head of the key (key-2 waits behind it); the ids still
      // deduplicate, on both sides.
      const next = await partitioned.outbox.claim({ limit: 100, leaseMs: 60_000, workerId: 'relay-b' })
      expect(next.map((e) => e.eventId)).toEqual([
        'd0-3',
        'd0-4',
        'd1-0',
        'd1-1',
        'd1-2',
        'd1-3',
        'd1-4',
        'd2-0',
        'd2-1',
        'd2-2',
        'd2-3',
        'key-1',
      ])
      const again = await partitioned.outbox.findOrCreate(event('d0-2', { payload: 'other' }))
      expect(again.status).toBe('failed')
      expect(
        (await partitioned.inbox.findOrCreate({ eventId: 'm1', subject: 's', payload: 'm1' })).deliveries,
      ).toBe(2)
      const fresh = await partitioned.outbox.findOrCreate(event('fresh'))
      const freshSeq = await pool.query<{ seq: string }>(
        `SELECT seq::text FROM "${schema}"."txbox_outbox" WHERE event_id = 'fresh'`,
      )
      expect(Number(freshSeq.rows[0]?.seq)).toBeGreaterThan(maxSeq + 1)
      expect(fresh.status).toBe('pending')
      expect((await partitioned.outbox.findOrCreate(event('key-3', { orderingKey: 'order-7' }))).keySeq).toBe(
        3,
      )

      // A second migrate, with or without the option, changes nothing.
      await partitioned.migrate()
      await plain.migrate()
      expect((await snapshot(schema, 'outbox')).length).toBe(outboxBefore.length + 2)
    })
  },
)
