import { ManualClock } from '@txbox/core'
import type { Pool } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { MySqlStore } from '../src/index.js'
import { freshStore, makePool, SKIP, SKIP_REASON } from './helpers.js'

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0, 123)

// The claim answers the rows it locked with the claim's columns set (no read after its
// UPDATE); a fenced markManyAsSent is one autocommit UPDATE that applies only when every
// stored id is held (else it fails whole and the ids are marked one by one under locks).
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

  it('sends every held id with one statement on the pool, no transaction', async () => {
    await store.outbox.findOrCreateMany(
      ['r-1', 'r-2', 'r-3'].map((eventId) => ({ eventId, subject: 's', payload: 'p' })),
    )
    const claimed = await store.outbox.claim({ limit: 3, leaseMs: 60_000, workerId: 'w4' })
    expect(claimed.map((event) => event.eventId)).toEqual(['r-1', 'r-2', 'r-3'])
    const execute = vi.spyOn(pool, 'execute')
    const getConnection = vi.spyOn(pool, 'getConnection')
    try {
      expect(await store.outbox.markManyAsSent(['r-1', 'r-2'], { workerId: 'w4' })).toEqual([])
      expect(execute).toHaveBeenCalledTimes(1)
      expect(getConnection).not.toHaveBeenCalled()
      // An id not stored: the UPDATE changes fewer rows than ids, and the rows it sent are read.
      execute.mockClear()
      expect(await store.outbox.markManyAsSent(['r-3', 'r-gone'], { workerId: 'w4' })).toEqual(['r-gone'])
      expect(execute).toHaveBeenCalledTimes(2)
      expect(getConnection).not.toHaveBeenCalled()
    } finally {
      execute.mockRestore()
      getConnection.mockRestore()
    }
    for (const id of ['r-1', 'r-2', 'r-3'])
      expect(await store.outbox.get(id)).toMatchObject({ status: 'sent', sentAt: new Date(clock.now()) })
  })
})

// Without STRICT_TRANS_TABLES the server turns many bad values into warnings; the overflow
// that undoes a mark with an id not held is an error in every sql_mode.
describe.skipIf(SKIP)(`mysql fenced mark, sql_mode ''${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  let pool: Pool
  let store: MySqlStore
  let drop: () => Promise<void>

  beforeAll(async () => {
    pool = makePool({ connectionLimit: 2 })
    pool.on('connection', (connection) => {
      connection.query("SET SESSION sql_mode = ''")
    })
    ;({ store, drop } = await freshStore(pool, { clock: new ManualClock(T0).now }))
  })

  afterAll(async () => {
    await drop?.()
    await pool?.end()
  })

  it('changes nothing when one id is not held, then marks only the held ones', async () => {
    const [[mode]] = (await pool.query('SELECT @@SESSION.sql_mode AS m')) as unknown as [[{ m: string }]]
    expect(mode?.m).toBe('')
    await store.outbox.findOrCreateMany(
      ['n-1', 'n-2', 'n-3'].map((eventId) => ({ eventId, subject: 's', payload: 'p' })),
    )
    await store.outbox.claim({ limit: 3, leaseMs: 60_000, workerId: 'w1' })
    await pool.query(`UPDATE \`${store.tablePrefix}outbox\` SET claimed_by = 'w2' WHERE event_id = 'n-3'`)
    // A partial UPDATE would leave n-1 and n-2 sent and no longer held: both would be answered lost.
    expect(await store.outbox.markManyAsSent(['n-1', 'n-2', 'n-3'], { workerId: 'w1' })).toEqual(['n-3'])
    expect(await store.outbox.get('n-3')).toMatchObject({ status: 'publishing', claimedBy: 'w2' })
    const [rows] = (await pool.query(
      `SELECT event_id, status FROM \`${store.tablePrefix}outbox\` ORDER BY seq`,
    )) as unknown as [{ event_id: string; status: string }[]]
    expect(rows.map((row) => `${row.event_id}:${row.status}`)).toEqual([
      'n-1:sent',
      'n-2:sent',
      'n-3:publishing',
    ])
  })
})
