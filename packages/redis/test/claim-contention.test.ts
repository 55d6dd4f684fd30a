import { ManualClock } from '@txbox/core'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRedisStore } from '../src/index.js'
import { connect, dropStore, newStore, outboxProblems, SKIP, SKIP_REASON, type TestStore } from './helpers.js'

const EVENTS = 10_000
const CLAIMERS = 8
const BATCH = 100

describe.skipIf(SKIP)(`claim under contention (${SKIP ? SKIP_REASON : 'redis'})`, () => {
  let admin: Redis
  let claimers: Redis[] = []
  let t: TestStore

  beforeAll(async () => {
    admin = connect()
    // Separate connections: each claimer's scripts really race on the server.
    claimers = Array.from({ length: CLAIMERS }, () => connect())
    t = await newStore(admin, new ManualClock())
  })

  afterAll(async () => {
    await dropStore(admin, t.keyPrefix)
    await Promise.all([admin, ...claimers].map((c) => c.quit()))
  })

  it(`${CLAIMERS} claimers on separate connections claim each of ${EVENTS} events exactly once, in enqueue order`, async () => {
    for (let i = 0; i < EVENTS; i += 1000) {
      await t.store.outbox.findOrCreateMany(
        Array.from({ length: 1000 }, (_, j) => ({
          eventId: `e-${i + j}`,
          subject: 'c.test',
          payload: `${i + j}`,
        })),
      )
    }
    const claimed = new Map<string, string>()
    const perWorker: number[] = []
    const started = performance.now()
    await Promise.all(
      claimers.map(async (redis, w) => {
        const outbox = createRedisStore({ redis, keyPrefix: t.keyPrefix, clock: t.clock.now }).outbox
        const workerId = `w${w}`
        let mine = 0
        for (;;) {
          const batch = await outbox.claim({ limit: BATCH, leaseMs: 60_000, workerId })
          if (batch.length === 0) break
          // Within one claim the events come back in enqueue order.
          const seqs = batch.map((event) => Number(event.payload))
          expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
          for (const event of batch) {
            expect(claimed.has(event.eventId), `${event.eventId} claimed twice`).toBe(false)
            claimed.set(event.eventId, workerId)
            expect(event.claimedBy).toBe(workerId)
          }
          mine += batch.length
          const notApplied = await outbox.markManyAsSent(
            batch.map((event) => event.eventId),
            { workerId },
          )
          expect(notApplied).toEqual([])
        }
        perWorker[w] = mine
      }),
    )
    const elapsedMs = performance.now() - started
    expect(claimed.size).toBe(EVENTS)
    expect(await t.store.outbox.getCountByStatus()).toEqual({
      pending: 0,
      publishing: 0,
      sent: EVENTS,
      failed: 0,
    })
    expect(await outboxProblems(admin, t.store)).toEqual([])
    console.info(
      `[redis contention] ${EVENTS} events, ${CLAIMERS} claimers, batch ${BATCH}: ${Math.round(elapsedMs)} ms ` +
        `(${Math.round((EVENTS / elapsedMs) * 1000)} claim+markManyAsSent events/s); per worker ${perWorker.join(', ')}`,
    )
  })
})
