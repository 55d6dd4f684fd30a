import { ManualClock } from '@txbox/core'
import type { Pool } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MySqlStore } from '../src/index.js'
import { countStatements, freshStore, makePool, SKIP, SKIP_REASON } from './helpers.js'

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0, 123)

// A new delivery is one autocommit INSERT answered as written; a stored id fails it with a
// duplicate key and is handled in a short locking transaction (pooled connections, so the
// pool's execute sees only the first INSERT).
describe.skipIf(SKIP)(
  `mysql inbox, new and stored deliveries${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`,
  () => {
    let pool: Pool
    let store: MySqlStore
    let drop: () => Promise<void>
    let statements: () => number
    const clock = new ManualClock(T0)

    beforeAll(async () => {
      pool = makePool({ connectionLimit: 4 })
      ;({ store, drop } = await freshStore(pool, { clock: clock.now }))
      // The inbox reads the server's limits once, at its first write: not counted below.
      await store.inbox.findOrCreate({ eventId: 'warm-up', subject: 's', payload: 'p' })
      ;({ statements } = countStatements(pool))
    })

    afterAll(async () => {
      await drop?.()
      await pool?.end()
    })

    it('claims a new delivery with one INSERT and answers it as stored', async () => {
      const before = statements()
      const { event, shouldProcess } = await store.inbox.claim(
        {
          eventId: 'new-1',
          subject: 's',
          payload: '😀 \\ \u0000',
          headers: '{"a":"b"}',
          stream: 'S',
          streamSeq: 7,
        },
        { leaseMs: 30_000, workerId: 'w1' },
      )
      expect(statements() - before).toBe(1)
      expect(shouldProcess).toBe(true)
      expect(event).toMatchObject({
        status: 'processing',
        deliveries: 1,
        claimedBy: 'w1',
        stream: 'S',
        streamSeq: 7,
      })
      expect(event.leaseUntil?.getTime()).toBe(T0 + 30_000)
      expect(await store.inbox.get('new-1')).toEqual(event)
      const recorded = await store.inbox.findOrCreate({ eventId: 'new-2', subject: 's', payload: 'p' })
      expect(recorded).toEqual(await store.inbox.get('new-2'))
      expect(recorded.claimedBy).toBeUndefined()
    })

    it('counts a redelivery of a stored id, claims it only when its lease ended, and keeps the first position', async () => {
      const first = await store.inbox.claim(
        { eventId: 'again', subject: 's', payload: 'p', stream: 'S', streamSeq: 1 },
        { leaseMs: 10_000, workerId: 'w1' },
      )
      expect(first.shouldProcess).toBe(true)
      const leased = await store.inbox.claim(
        { eventId: 'again', subject: 's', payload: 'other', stream: 'S', streamSeq: 2 },
        { leaseMs: 10_000, workerId: 'w2' },
      )
      expect(leased.shouldProcess).toBe(false)
      expect(leased.event).toMatchObject({ deliveries: 2, claimedBy: 'w1', payload: 'p', streamSeq: 1 })
      clock.advance(10_000)
      const expired = await store.inbox.claim(
        { eventId: 'again', subject: 's', payload: 'other', stream: 'S', streamSeq: 3 },
        { leaseMs: 10_000, workerId: 'w2' },
      )
      expect(expired.shouldProcess).toBe(true)
      expect(expired.event).toMatchObject({ deliveries: 3, claimedBy: 'w2', payload: 'p', streamSeq: 1 })
      expect(await store.inbox.get('again')).toEqual(expired.event)
    })
  },
)
