import { ManualClock } from '@txbox/core'
import type { RowDataPacket } from 'mysql2/promise'
import { describe, expect, it } from 'vitest'
import { outboxSql } from '../src/sql.js'
import { freshStore, makePool, SKIP, SKIP_REASON } from './helpers.js'

// "N claimers on their own connections drain M events exactly once" is the conformance case
// outbox.claim.disjoint-across-connections, run on every adapter; what stays here is
// InnoDB's own: a claim locks only the rows it returns.
describe.skipIf(SKIP)(`claim locks only what it returns${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  it('a second claimer gets the next rows while the first still holds its locks', async () => {
    const pool = makePool({ connectionLimit: 3 })
    const clock = new ManualClock(Date.UTC(2026, 0, 1))
    const { store, drop } = await freshStore(pool, { clock: clock.now })
    const holder = await pool.getConnection()
    try {
      await store.outbox.findOrCreateMany(
        Array.from({ length: 100 }, (_, i) => ({
          eventId: `e-${i}`,
          subject: 's',
          payload: `${i}`,
          // Every third event is not due: the scans step over them.
          ...(i % 3 === 2 ? { availableAt: new Date(Date.UTC(2027, 0, 1)) } : {}),
        })),
      )
      // A claimer stopped in the middle of its transaction, right after the locking read.
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
      expect(locked).toHaveLength(10)
      const next = await store.outbox.claim({ limit: 10, leaseMs: 1000, workerId: 'second' })
      const due = Array.from({ length: 100 }, (_, i) => i).filter((i) => i % 3 !== 2)
      // The first claimer locked exactly its 10 due rows: the second gets the next 10.
      expect(next.map((event) => Number(event.payload))).toEqual(due.slice(10, 20))
    } finally {
      await holder.rollback()
      holder.release()
      await drop()
      await pool.end()
    }
  })
})
