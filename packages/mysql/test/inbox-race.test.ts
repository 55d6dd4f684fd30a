import type { Pool } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MySqlStore, RetryEvent } from '../src/index.js'
import { freshStore, makePool, SKIP, SKIP_REASON } from './helpers.js'

describe.skipIf(SKIP)(`inbox first-delivery races${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  let pool: Pool
  let store: MySqlStore
  let drop: () => Promise<void>
  const retries: RetryEvent[] = []

  beforeAll(async () => {
    pool = makePool({ connectionLimit: 20 })
    ;({ store, drop } = await freshStore(pool, { onRetry: (event) => retries.push(event) }))
  })

  afterAll(async () => {
    await drop?.()
    await pool?.end()
  })

  it('20 concurrent claims of a new id, 25 times over: one winner each time, 20 deliveries, no escaped deadlock', async () => {
    for (let round = 0; round < 25; round++) {
      const eventId = `race-${round}`
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          // Half of them are redeliveries at another stream position: the id alone decides.
          store.inbox.claim(
            {
              eventId,
              subject: 's',
              payload: 'p',
              stream: 'S',
              streamSeq: i % 2 === 0 ? round + 1 : round + 1_000 + i,
            },
            { leaseMs: 60_000, workerId: `w${i}` },
          ),
        ),
      )
      expect(results.filter((result) => result.shouldProcess)).toHaveLength(1)
      const stored = await store.inbox.get(eventId)
      expect(stored?.deliveries).toBe(20)
      expect(new Set(results.map((result) => result.event.eventId))).toEqual(new Set([eventId]))
    }
    console.info(`[mysql inbox race] 25 rounds x 20 claimers: ${retries.length} deadlock/timeout retries`)
  })
})
