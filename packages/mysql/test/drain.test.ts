import { ManualClock } from '@txbox/core'
import type { Pool } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MySqlStore } from '../src/index.js'
import { freshStore, makePool, SKIP, SKIP_REASON } from './helpers.js'

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0, 123)

// The claim answers the rows it locked with the claim's columns set (no read after its
// UPDATE); a fenced markManyAsSent is one UPDATE committed only when every id was held.
describe.skipIf(SKIP)(`mysql claim and mark${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  let pool: Pool
  let store: MySqlStore
  let drop: () => Promise<void>
  const clock = new ManualClock(T0)

  beforeAll(async () => {
    pool = makePool({ connectionLimit: 4 })
    ;({ store, drop } = await freshStore(pool, { clock: clock.now }))
  })

  afterAll(async () => {
    await drop?.()
    await pool?.end()
  })

  it('answers claimed events as stored: due ones and expired leases, in enqueue order', async () => {
    await store.outbox.findOrCreateMany(
      Array.from({ length: 6 }, (_, i) => ({
        eventId: `c-${i}`,
        subject: 's',
        payload: `p${i}`,
        ...(i === 0 ? { headers: '{"h":"v"}' } : {}),
      })),
    )
    const first = await store.outbox.claim({ limit: 2, leaseMs: 1000, workerId: 'w1' })
    expect(first.map((event) => event.eventId)).toEqual(['c-0', 'c-1'])
    clock.advance(1000)
    // c-0 and c-1's leases ended: they come back first, in seq order, with the due ones.
    const second = await store.outbox.claim({ limit: 4, leaseMs: 5000, workerId: 'w2' })
    expect(second.map((event) => event.eventId)).toEqual(['c-0', 'c-1', 'c-2', 'c-3'])
    for (const event of second) {
      expect(event).toMatchObject({ status: 'publishing', claimedBy: 'w2' })
      expect(event.leaseUntil?.getTime()).toBe(T0 + 6000)
      expect(await store.outbox.get(event.eventId)).toEqual(event)
    }
    expect(second[0]?.headers).toBe('{"h":"v"}')
  })

  it('marks the held ids and leaves the one another worker took over untouched', async () => {
    // What the first case left due is sent first (one UPDATE, all held).
    const left = await store.outbox.claim({ limit: 100, leaseMs: 60_000, workerId: 'w0' })
    expect(
      await store.outbox.markManyAsSent(
        left.map((event) => event.eventId),
        { workerId: 'w0' },
      ),
    ).toEqual([])
    await store.outbox.findOrCreateMany(
      ['m-1', 'm-2', 'm-3'].map((eventId) => ({ eventId, subject: 's', payload: 'p' })),
    )
    const claimed = await store.outbox.claim({ limit: 3, leaseMs: 60_000, workerId: 'w1' })
    expect(claimed.map((event) => event.eventId)).toEqual(['m-1', 'm-2', 'm-3'])
    // As if m-2's lease had ended and worker w2 had claimed it since.
    await pool.query(`UPDATE \`${store.tablePrefix}outbox\` SET claimed_by = 'w2' WHERE event_id = 'm-2'`)
    expect(await store.outbox.markManyAsSent(['m-1', 'm-2', 'm-3', 'm-missing'], { workerId: 'w1' })).toEqual(
      ['m-2', 'm-missing'],
    )
    expect((await store.outbox.get('m-1'))?.status).toBe('sent')
    expect((await store.outbox.get('m-3'))?.status).toBe('sent')
    expect(await store.outbox.get('m-2')).toMatchObject({ status: 'publishing', claimedBy: 'w2' })
    // All held: one UPDATE, every id applied.
    expect(await store.outbox.markManyAsSent(['m-2'], { workerId: 'w2' })).toEqual([])
    expect(await store.outbox.get('m-2')).toMatchObject({ status: 'sent' })
  })
})
