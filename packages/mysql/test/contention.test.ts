import { ManualClock } from '@txbox/core'
import type { Pool, RowDataPacket } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMySqlStore, type MySqlStore, type RetryEvent } from '../src/index.js'
import { outboxSql } from '../src/sql.js'
import { freshStore, makePool, SKIP, SKIP_REASON } from './helpers.js'

const EVENTS = 10_000
const CLAIMERS = 8
const BATCH = 50

describe.skipIf(SKIP)(`claim under contention${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  let setupPool: Pool
  let store: MySqlStore
  let drop: () => Promise<void>
  const claimerPools: Pool[] = []
  const clock = new ManualClock(Date.UTC(2026, 0, 1))

  beforeAll(async () => {
    setupPool = makePool({ connectionLimit: 2 })
    ;({ store, drop } = await freshStore(setupPool, { clock: clock.now }))
    for (let start = 0; start < EVENTS; start += 1000) {
      await store.outbox.findOrCreateMany(
        Array.from({ length: 1000 }, (_, i) => ({
          eventId: `e-${start + i}`,
          subject: 's',
          payload: `${start + i}`,
        })),
      )
    }
  })

  afterAll(async () => {
    await Promise.all(claimerPools.map((pool) => pool.end()))
    await drop?.()
    await setupPool?.end()
  })

  it(`${CLAIMERS} claimers on separate connections claim each of ${EVENTS} events exactly once`, async () => {
    const retries: RetryEvent[] = []
    const claimers = Array.from({ length: CLAIMERS }, (_, index) => {
      // One connection per claimer: the claimers really are separate sessions.
      const pool = makePool({ connectionLimit: 1 })
      claimerPools.push(pool)
      return {
        workerId: `w${index}`,
        store: createMySqlStore({
          pool,
          tablePrefix: store.tablePrefix,
          clock: clock.now,
          onRetry: (event) => retries.push(event),
        }),
      }
    })
    const claimedBy = new Map<string, string[]>()
    const calls = { claims: 0, empty: 0 }
    const started = performance.now()
    await Promise.all(
      claimers.map(async ({ workerId, store: claimer }) => {
        for (;;) {
          const batch = await claimer.outbox.claim({ limit: BATCH, leaseMs: 600_000, workerId })
          calls.claims++
          if (batch.length === 0) {
            calls.empty++
            return
          }
          // Each batch comes back in enqueue order.
          const seqs = batch.map((event) => Number(event.payload))
          expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
          for (const event of batch) {
            expect(event.claimedBy).toBe(workerId)
            claimedBy.set(event.eventId, [...(claimedBy.get(event.eventId) ?? []), workerId])
          }
        }
      }),
    )
    const elapsedMs = performance.now() - started
    const twice = [...claimedBy].filter(([, workers]) => workers.length > 1)
    expect(twice).toEqual([])
    expect(claimedBy.size).toBe(EVENTS)
    expect(await store.outbox.getCountByStatus()).toEqual({
      pending: 0,
      publishing: EVENTS,
      sent: 0,
      failed: 0,
    })
    const perWorker = Object.fromEntries(
      claimers.map(({ workerId }) => [
        workerId,
        [...claimedBy.values()].filter((w) => w[0] === workerId).length,
      ]),
    )
    // Reported, not asserted: how the claimers shared the work and how often InnoDB made
    // the adapter retry (a deadlock that escaped would have failed the claims above).
    console.info(
      `[mysql contention] ${EVENTS} events, ${CLAIMERS} claimers, batch ${BATCH}: ${calls.claims} claim calls in ` +
        `${Math.round(elapsedMs)} ms, ${retries.length} retries (${retries.map((r) => (r.error as { errno?: number }).errno).join(',') || 'none'}), per worker ${JSON.stringify(perWorker)}`,
    )
  })
})

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
      const sql = outboxSql(`${store.tablePrefix}outbox`)
      const [locked] = await holder.execute<RowDataPacket[]>(sql.claimDue, ['2026-01-01 00:00:00.000', 10])
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
