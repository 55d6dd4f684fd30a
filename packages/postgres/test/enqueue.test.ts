import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { timestampText } from '../src/postgres-outbox-repository.js'
import { createNamespace, event, type Namespace, newPool, noServer, skipReason } from './helpers.js'

describe.skipIf(noServer)(`enqueue and inbox races${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  let ns: Namespace
  let other: pg.Pool

  beforeAll(async () => {
    ns = await createNamespace({ max: 10 })
    other = newPool(10)
  })
  afterAll(async () => {
    await other?.end()
    await ns?.dispose()
  })

  it('20 concurrent findOrCreate of one id on 20 connections store one row; all return it', async () => {
    const stores = [ns.store, ns.storeOn(other)]
    ns.clock.setAutoAdvance(1)
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        stores[i % 2]!.outbox.findOrCreate(event('same', { payload: `writer-${i}` })),
      ),
    )
    ns.clock.setAutoAdvance(0)
    const stored = await ns.pool.query(
      `SELECT payload, enqueued_at FROM "${ns.schema}".txbox_outbox WHERE event_id = 'same'`,
    )
    expect(stored.rowCount).toBe(1)
    for (const result of results) {
      expect(result.payload).toBe(stored.rows[0].payload)
      expect(result.enqueuedAt).toEqual(stored.rows[0].enqueued_at)
    }
  })

  /** Resolves once some session of this test waits on a row lock (polled, with a deadline). */
  const someoneWaitsOnALock = async () => {
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      const waiting = await other.query(
        `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%${ns.schema}%'`,
      )
      if (waiting.rowCount) return
      await new Promise((resolve) => setImmediate(resolve))
    }
    throw new Error('no session waited on the lock within 10 s')
  }

  it('an enqueue that waits on a concurrent inserter returns the winner row once it commits', async () => {
    // The waiting statement's snapshot predates the winner's commit, so its read-back half
    // cannot see the row: this exercises the re-read with a fresh snapshot.
    const winner = await ns.pool.connect()
    try {
      await winner.query('BEGIN')
      await ns.store.outbox.findOrCreate(event('contended', { payload: 'winner' }), { tx: winner })
      const loser = ns.storeOn(other).outbox.findOrCreate(event('contended', { payload: 'loser' }))
      await someoneWaitsOnALock()
      await winner.query('COMMIT')
      expect((await loser).payload).toBe('winner')
    } finally {
      winner.release()
    }
  })

  it('overlapping findOrCreateMany batches from two pools: one row per id, input order, first write wins', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `batch-${i}`)
    const batches = Array.from({ length: 8 }, (_, b) =>
      // Each batch: a shuffled overlap of the ids, with an in-batch duplicate at the end.
      [...ids.slice(b * 10, b * 10 + 100), ids[b * 10]!].map((id) => event(id, { payload: `b${b}` })),
    )
    const stores = [ns.store, ns.storeOn(other)]
    const results = await Promise.all(
      batches.map((batch, b) => stores[b % 2]!.outbox.findOrCreateMany(batch)),
    )
    for (const [b, batch] of batches.entries()) {
      expect(results[b]!.map((e) => e.eventId)).toEqual(batch.map((e) => e.eventId))
      // The duplicate position carries the stored event, like the first occurrence.
      expect(results[b]!.at(-1)).toEqual(results[b]![0])
    }
    const stored = await ns.pool.query<{ event_id: string; payload: string }>(
      `SELECT event_id, payload FROM "${ns.schema}".txbox_outbox WHERE event_id LIKE 'batch-%'`,
    )
    expect(stored.rowCount).toBe(170)
    const byId = new Map(stored.rows.map((row) => [row.event_id, row.payload]))
    for (const result of results) for (const e of result) expect(e.payload).toBe(byId.get(e.eventId))
  })

  it('autocommitted batches sharing ids in opposite orders never deadlock (rows are inserted in id order)', async () => {
    const ids = Array.from({ length: 3000 }, (_, i) => `dl-${i}`)
    const forward = ids.map((id) => event(id))
    const backward = [...forward].reverse()
    const stores = [ns.store, ns.storeOn(other)]
    const results = await Promise.all(
      [forward, backward, forward, backward].map((batch, i) => stores[i % 2]!.outbox.findOrCreateMany(batch)),
    )
    for (const result of results) expect(result).toHaveLength(3000)
    const stored = await ns.pool.query(`SELECT 1 FROM "${ns.schema}".txbox_outbox WHERE event_id LIKE 'dl-%'`)
    expect(stored.rowCount).toBe(3000)
  })

  it('a batch keeps input order in seq even when some ids already exist', async () => {
    await ns.store.outbox.findOrCreate(event('ord-2'))
    const batch = ['ord-1', 'ord-2', 'ord-3', 'ord-1'].map((id) => event(id))
    const result = await ns.store.outbox.findOrCreateMany(batch)
    expect(result.map((e) => e.eventId)).toEqual(['ord-1', 'ord-2', 'ord-3', 'ord-1'])
    const seqs = await ns.pool.query<{ event_id: string }>(
      `SELECT event_id FROM "${ns.schema}".txbox_outbox WHERE event_id LIKE 'ord-%' ORDER BY seq`,
    )
    expect(seqs.rows.map((row) => row.event_id)).toEqual(['ord-2', 'ord-1', 'ord-3'])

    // Rows are inserted in id order (lock ordering) but numbered in input order.
    const shuffled = Array.from({ length: 500 }, (_, i) => `mix-${(i * 7919) % 500}`)
    await ns.store.outbox.findOrCreateMany(shuffled.map((id) => event(id)))
    const mixed = await ns.pool.query<{ event_id: string }>(
      `SELECT event_id FROM "${ns.schema}".txbox_outbox WHERE event_id LIKE 'mix-%' ORDER BY seq`,
    )
    expect(mixed.rows.map((row) => row.event_id)).toEqual(shuffled)
  })

  it('a new event is answered without reading it back, exactly as it is stored', async () => {
    // The insert answers only a count; the event returned is built from what was sent. Every
    // field must still equal the stored row: headers, U+0000, a due time in the future, ms.
    ns.clock.set(new Date('2030-01-02T03:04:05.678Z'))
    const sent = [
      { eventId: 'built-1', subject: 'a.b', payload: '{"x":1}', headers: '{"h":"\u0000v"}' },
      {
        eventId: 'built-2',
        subject: 'a\u0000c',
        payload: '',
        availableAt: new Date('2031-05-06T07:08:09.001Z'),
      },
    ]
    const one = await ns.store.outbox.findOrCreate({ eventId: 'built-0', subject: 's', payload: 'p' })
    const many = await ns.store.outbox.findOrCreateMany(sent)
    for (const created of [one, ...many]) {
      expect(created).toEqual(await ns.store.outbox.get(created.eventId))
    }
    expect(many[1]?.availableAt.toISOString()).toBe('2031-05-06T07:08:09.001Z')
    expect(one.enqueuedAt.toISOString()).toBe('2030-01-02T03:04:05.678Z')
  })

  it('U+0000 round-trips in every text field that may hold it, stored escaped (PostgreSQL text cannot)', async () => {
    // Not in the id: an event id travels as a NATS header, which cannot carry control characters.
    const id = 'nul-id'
    const created = await ns.store.outbox.findOrCreate({
      eventId: id,
      subject: 'sub\u0000ject',
      payload: '\u0000{"a":"\u0001\u0002"}\u0000',
      headers: '\u0000',
    })
    expect(created.eventId).toBe(id)
    const [claimed] = await ns.store.outbox.claim({ limit: 10_000, leaseMs: 1000, workerId: 'w\u0000' })
    expect(claimed).toBeDefined()
    const all = await ns.store.outbox.get(id)
    expect(all?.payload).toBe('\u0000{"a":"\u0001\u0002"}\u0000')
    expect(all?.headers).toBe('\u0000')
    await ns.store.outbox.markAsFailed(id, 'bad \u0000 thing', { workerId: 'w\u0000' })
    expect((await ns.store.outbox.get(id))?.errorMessage).toBe('bad \u0000 thing')
  })

  it('inbox: 20 concurrent claims of one new id on two pools: exactly one processes, 20 deliveries', async () => {
    const stores = [ns.store, ns.storeOn(other)]
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        stores[i % 2]!.inbox.claim(event('in-race', { stream: 'S', streamSeq: 7 }), {
          leaseMs: 30_000,
          workerId: `w${i}`,
        }),
      ),
    )
    expect(results.filter((r) => r.shouldProcess)).toHaveLength(1)
    const raw = await ns.pool.query(
      `SELECT deliveries FROM "${ns.schema}".txbox_inbox WHERE event_id = 'in-race'`,
    )
    expect(raw.rows).toEqual([{ deliveries: 20 }])
    // A new id at the same (stream, streamSeq) is a new event (a re-created stream restarts at 1).
    const reused = await ns.store.inbox.findOrCreate(event('in-race-reused', { stream: 'S', streamSeq: 7 }))
    expect(reused).toMatchObject({ eventId: 'in-race-reused', deliveries: 1, streamSeq: 7 })
    const again = await ns.pool.query(
      `SELECT deliveries FROM "${ns.schema}".txbox_inbox WHERE event_id = 'in-race'`,
    )
    expect(again.rows).toEqual([{ deliveries: 20 }])
  })

  it('a batch stores every availableAt to the millisecond: `now` once as text, a given Date as it is', async () => {
    ns.clock.advance(891)
    const now = ns.clock.peekMs()
    const given = new Date(now + 86_400_001)
    const yearOne = new Date('0001-02-03T04:05:06.789Z')
    const events = [
      event('at-now-1'),
      event('at-given', { availableAt: given }),
      event('at-now-2'),
      event('at-year-one', { availableAt: yearOne }),
    ]
    const answered = await ns.store.outbox.findOrCreateMany(events)
    const stored = await ns.pool.query<{ event_id: string; available_at: Date; enqueued_at: Date }>(
      `SELECT event_id, available_at, enqueued_at FROM "${ns.schema}".txbox_outbox WHERE event_id LIKE 'at-%' ORDER BY seq`,
    )
    const expected = [now, given.getTime(), now, yearOne.getTime()]
    expect(stored.rows.map((row) => row.available_at.getTime())).toEqual(expected)
    expect(stored.rows.map((row) => row.enqueued_at.getTime())).toEqual([now, now, now, now])
    expect(answered.map((e) => e.availableAt.getTime())).toEqual(expected)
  })

  it('writes a timestamp as ISO text only for years 0001-9999, where PostgreSQL reads it as the same instant', () => {
    expect(timestampText(new Date('2026-03-04T05:06:07.891Z'))).toBe('2026-03-04T05:06:07.891Z')
    expect(timestampText(new Date('0001-01-01T00:00:00.000Z'))).toBe('0001-01-01T00:00:00.000Z')
    // Year 0 (1 BC), negative and five-digit years: the Date, for node-postgres's own format.
    for (const date of [
      new Date('0000-12-31T00:00:00.000Z'),
      new Date('-000100-01-01T00:00:00.000Z'),
      new Date('+010000-01-01T00:00:00.000Z'),
    ]) {
      expect(timestampText(date)).toBe(date)
    }
  })

  it('inbox: 20 concurrent findOrCreate of one id store one row with 20 deliveries', async () => {
    const stores = [ns.store, ns.storeOn(other)]
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => stores[i % 2]!.inbox.findOrCreate(event('in-foc'))),
    )
    const raw = await ns.pool.query(
      `SELECT deliveries, status FROM "${ns.schema}".txbox_inbox WHERE event_id = 'in-foc'`,
    )
    expect(raw.rows).toEqual([{ deliveries: 20, status: 'processing' }])
  })
})
