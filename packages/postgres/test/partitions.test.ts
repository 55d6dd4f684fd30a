import { ManualClock, StorageError, ValidationError } from '@txbox/core'
import type pg from 'pg'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  connectPostgres,
  createPostgresStore,
  PARTITION_LOCK_TIMEOUT_MS,
  type PostgresStore,
} from '../src/index.js'
import { nextPeriod, periodOfSuffix, periodStart, periodSuffix } from '../src/postgres-partitions.js'
import { CLAIM_PLANNER_SETTINGS, outboxSql } from '../src/sql.js'
import { event, freshSchema, newPool, noServer, skipReason, url } from './helpers.js'

interface PlanNode {
  'Node Type': string
  'Index Name'?: string
  'Relation Name'?: string
  Plans?: PlanNode[]
}
const planNodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(planNodes)]

const DAY = 86_400_000
/** Noon, so that hours of clock movement inside a test stay within one UTC day. */
const START = Date.UTC(2026, 2, 10, 12)

describe('partition periods', () => {
  it('cuts UTC days and months, and names them so that the name gives the range back', () => {
    const late = new Date(Date.UTC(2026, 1, 28, 23, 59, 59, 999))
    expect(periodStart('daily', late).toISOString()).toBe('2026-02-28T00:00:00.000Z')
    expect(nextPeriod('daily', periodStart('daily', late)).toISOString()).toBe('2026-03-01T00:00:00.000Z')
    expect(periodStart('monthly', late).toISOString()).toBe('2026-02-01T00:00:00.000Z')
    expect(nextPeriod('monthly', new Date(Date.UTC(2026, 11, 1))).toISOString()).toBe(
      '2027-01-01T00:00:00.000Z',
    )
    expect(periodSuffix('daily', new Date(Date.UTC(2026, 0, 5)))).toBe('p20260105')
    expect(periodSuffix('monthly', new Date(Date.UTC(2026, 0, 5)))).toBe('p202601')
    expect(periodOfSuffix('p20260105')).toEqual({
      start: new Date(Date.UTC(2026, 0, 5)),
      end: new Date(Date.UTC(2026, 0, 6)),
    })
    expect(periodOfSuffix('p202612')).toEqual({
      start: new Date(Date.UTC(2026, 11, 1)),
      end: new Date(Date.UTC(2027, 0, 1)),
    })
    expect(periodOfSuffix('pold')).toBeUndefined()
    expect(periodOfSuffix('default')).toBeUndefined()
  })
})

describe('options.partitioning', () => {
  const pool = newPool(1)
  afterAll(() => pool.end())

  it.each([
    ['daily', /options\.partitioning must be an object/],
    [{ interval: 'weekly' }, /interval must be 'daily' or 'monthly'; got "weekly"/],
    [{}, /interval must be 'daily' or 'monthly'; got undefined/],
    [{ interval: 'daily', ahead: -1 }, /ahead must be an integer from 0 to 366/],
    [{ interval: 'monthly', ahead: 13 }, /ahead must be an integer from 0 to 12/],
    [{ interval: 'daily', ahead: 1.5 }, /ahead must be an integer/],
  ])('%j is a ValidationError', (partitioning, message) => {
    const create = () => createPostgresStore({ pool, partitioning: partitioning as never })
    expect(create).toThrow(ValidationError)
    expect(create).toThrow(/^\[txbox\] \[postgres\] /)
    expect(create).toThrow(message)
  })
})

describe.skipIf(noServer)(`partitioned tables${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  let pool: pg.Pool
  let schema: string
  let clock: ManualClock
  let store: PostgresStore

  beforeEach(async () => {
    pool = newPool(4)
    schema = freshSchema()
    clock = new ManualClock(START)
    store = createPostgresStore({
      pool,
      schema,
      clock: clock.now,
      partitioning: { interval: 'daily', ahead: 3 },
    })
    await store.migrate()
  })

  afterEach(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await pool.end()
  })

  const partitions = async (table: 'outbox' | 'inbox'): Promise<string[]> => {
    const result = await pool.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
       WHERE i.inhparent = $1::regclass ORDER BY c.relname`,
      [`"${schema}"."txbox_${table}"`],
    )
    return result.rows.map((row) => row.name.replace(`txbox_${table}_`, ''))
  }

  /** The partition holding each of these outbox events. */
  const homes = async (
    ids: string[],
    table: 'outbox' | 'inbox' = 'outbox',
  ): Promise<Record<string, string>> => {
    const result = await pool.query<{ event_id: string; home: string }>(
      `SELECT event_id, tableoid::regclass::text AS home FROM "${schema}"."txbox_${table}" WHERE event_id = ANY($1)`,
      [ids],
    )
    return Object.fromEntries(
      result.rows.map((row) => [row.event_id, row.home.replace(`${schema}.txbox_${table}_`, '')]),
    )
  }

  const idCount = async (table: 'outbox' | 'inbox'): Promise<number> => {
    const result = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${schema}"."txbox_${table}_ids"`,
    )
    return result.rows[0]?.n ?? -1
  }

  const sendAll = async (ids: string[]) => {
    for (const id of ids) await store.outbox.markAsSent(id)
  }

  it('migrate() makes both tables partitioned: the converted table up to the next UTC day, `ahead` days after it, a default', async () => {
    for (const table of ['outbox', 'inbox'] as const) {
      const kind = await pool.query<{ relkind: string }>(
        `SELECT relkind FROM pg_class WHERE oid = $1::regclass`,
        [`"${schema}"."txbox_${table}"`],
      )
      expect(kind.rows[0]?.relkind).toBe('p')
      // Now is 2026-03-10: the converted (empty) table holds it; 3 ahead means up to the 13th.
      expect(await partitions(table)).toEqual(['default', 'p20260311', 'p20260312', 'p20260313', 'pold'])
    }
    // A second migrate, and a maintenance run, change nothing.
    await store.migrate()
    expect(await store.maintainPartitions()).toBe(0)
    expect(await partitions('outbox')).toEqual(['default', 'p20260311', 'p20260312', 'p20260313', 'pold'])
  })

  it('keeps event-id uniqueness across partitions: first write wins days later, on both sides', async () => {
    const first = await store.outbox.findOrCreate(event('a', { payload: 'first' }))
    clock.advance(2 * DAY)
    const again = await store.outbox.findOrCreate(event('a', { payload: 'second' }))
    expect(again.enqueuedAt).toEqual(first.enqueuedAt)
    expect(again.payload).toBe('first')
    const [b, a] = await store.outbox.findOrCreateMany([event('b'), event('a', { payload: 'third' })])
    expect(a?.payload).toBe('first')
    expect(b?.enqueuedAt.getTime()).toBe(START + 2 * DAY)
    expect(await homes(['a', 'b'])).toEqual({ a: 'pold', b: 'p20260312' })
    expect(await store.outbox.getCountByStatus()).toMatchObject({ pending: 2 })

    const delivery = { eventId: 'm', subject: 'orders.created', payload: '{}' }
    await store.inbox.findOrCreate(delivery)
    clock.advance(DAY)
    const redelivered = await store.inbox.findOrCreate(delivery)
    expect(redelivered.deliveries).toBe(2)
    expect(redelivered.receivedAt.getTime()).toBe(START + 2 * DAY)
    expect(await homes(['m'], 'inbox')).toEqual({ m: 'p20260312' })
  })

  it('ordering keys hold across partitions: keySeq goes on, a duplicate answers its stored keySeq, an older unsent event of the key blocks a newer one', async () => {
    const first = await store.outbox.findOrCreate(event('k1', { orderingKey: 'order-42' }))
    clock.advance(DAY)
    const [second, again] = await store.outbox.findOrCreateMany([
      event('k2', { orderingKey: 'order-42' }),
      event('k1', { orderingKey: 'order-42', payload: 'other' }),
    ])
    expect([first.keySeq, second?.keySeq, again?.keySeq]).toEqual([1, expect.any(Number), 1])
    expect(second?.keySeq).toBeGreaterThan(1)
    expect(await homes(['k1', 'k2'])).toEqual({ k1: 'pold', k2: 'p20260311' })
    // k1 (older partition) is the head: the claim takes it alone, then k2 once k1 is sent.
    const heads = await store.outbox.claim({ limit: 10, leaseMs: 60_000, workerId: 'w' })
    expect(heads.map((e) => e.eventId)).toEqual(['k1'])
    await store.outbox.markAsSent('k1', { workerId: 'w' })
    const next = await store.outbox.claim({ limit: 10, leaseMs: 60_000, workerId: 'w' })
    expect(next.map((e) => e.eventId)).toEqual(['k2'])
  })

  it("the claim walks each partition's claimable index in seq order and merges them: no sort, no scan of a partition with rows", async () => {
    for (let day = 0; day < 4; day++) {
      await store.outbox.findOrCreateMany(Array.from({ length: 3000 }, (_, i) => event(`e${day}-${i}`)))
      clock.advance(DAY)
    }
    // Most of the history sent, as in production: the claimable indexes hold the rest.
    await pool.query(
      `UPDATE "${schema}"."txbox_outbox" SET status = 'sent', sent_at = enqueued_at WHERE event_id LIKE '%-1%'`,
    )
    await pool.query(`ANALYZE "${schema}"."txbox_outbox"`)
    const now = clock.now()
    const claim = outboxSql(schema, 'txbox_', true).claim({
      workerId: 'w',
      now,
      leaseUntil: new Date(now.getTime() + 30_000),
      limit: 100,
      deadLettersBlockKeys: true,
      keyedLive: false,
    })
    const results = (await pool.query(
      claim.replace(CLAIM_PLANNER_SETTINGS, `${CLAIM_PLANNER_SETTINGS} EXPLAIN (FORMAT JSON)`),
    )) as unknown as { rows: { 'QUERY PLAN'?: [{ Plan: PlanNode }] }[] }[]
    const explained = results.find((result) => result.rows[0]?.['QUERY PLAN'] !== undefined)
    const plan = planNodes(explained!.rows[0]!['QUERY PLAN']![0].Plan)
    const types = plan.map((node) => node['Node Type'])
    expect(types).toContain('Merge Append')
    expect(types).not.toContain('Sort')
    // Only the empty default partition may be read whole: that costs nothing.
    const scanned = plan
      .filter((node) => node['Node Type'] === 'Seq Scan')
      .map((node) => node['Relation Name'])
    expect(new Set(scanned)).toEqual(new Set(['txbox_outbox_default']))
    const claimable = plan.filter(
      (node) => node['Index Name']?.endsWith('_seq_idx') || node['Index Name'] === 'txbox_outbox_pold_1',
    )
    expect(new Set(claimable.map((node) => node['Relation Name']))).toEqual(
      new Set([
        'txbox_outbox_pold',
        'txbox_outbox_p20260311',
        'txbox_outbox_p20260312',
        'txbox_outbox_p20260313',
        'txbox_outbox_default',
      ]),
    )
    const claimed = await store.outbox.claim({ limit: 5, leaseMs: 30_000, workerId: 'w' })
    expect(claimed.map((e) => e.eventId)).toEqual(['e0-0', 'e0-2', 'e0-3', 'e0-4', 'e0-5'])
  })

  it('an insert beyond the partitions ahead lands in the default partition, and moves out when its partition is created', async () => {
    const early = await store.outbox.findOrCreate(event('early'))
    clock.advance(30 * DAY)
    const late = await store.outbox.findOrCreate(event('late'))
    const lateToo = await store.outbox.findOrCreate(event('late-too'))
    expect(await homes(['late', 'late-too'])).toEqual({ late: 'default', 'late-too': 'default' })
    await store.inbox.findOrCreate({ eventId: 'in-late', subject: 's', payload: '{}' })

    // 2026-04-09: that day and 3 ahead, for each table.
    expect(await store.maintainPartitions()).toBe(8)
    expect(await homes(['late', 'late-too'])).toEqual({ late: 'p20260409', 'late-too': 'p20260409' })
    expect(await homes(['in-late'], 'inbox')).toEqual({ 'in-late': 'p20260409' })
    // Moved, not re-enqueued: same seq order, same fields, ids still deduplicated.
    const claimed = await store.outbox.claim({ limit: 10, leaseMs: 60_000, workerId: 'w' })
    expect(claimed.map((e) => e.eventId)).toEqual(['early', 'late', 'late-too'])
    expect(claimed[1]?.enqueuedAt).toEqual(late.enqueuedAt)
    expect(claimed[2]?.enqueuedAt).toEqual(lateToo.enqueuedAt)
    expect((await store.outbox.findOrCreate(event('late', { payload: 'other' }))).payload).toBe(late.payload)
    expect(early.enqueuedAt.getTime()).toBe(START)
    expect(await idCount('outbox')).toBe(3)
  })

  it('cleanup drops a partition whose every row is sent before the cutoff, and keeps one with a pending, publishing or failed row', async () => {
    // Day 11: all sent. Day 12: one stays pending. Day 13: one dead letter. Day 14 (default,
    // beyond the 3 ahead): one publishing.
    const days: Record<string, string[]> = {
      p20260311: ['d11-a', 'd11-b', 'd11-c'],
      p20260312: ['d12-a', 'd12-b', 'd12-pending'],
      p20260313: ['d13-a', 'd13-failed'],
      default: ['d14-a', 'd14-publishing'],
    }
    for (const ids of Object.values(days)) {
      clock.advance(DAY)
      await store.outbox.findOrCreateMany(ids.map((id) => event(id)))
    }
    expect(await homes(['d11-a', 'd12-a', 'd13-a', 'd14-a'])).toEqual({
      'd11-a': 'p20260311',
      'd12-a': 'p20260312',
      'd13-a': 'p20260313',
      'd14-a': 'default',
    })
    await sendAll(['d11-a', 'd11-b', 'd11-c', 'd12-a', 'd12-b', 'd13-a', 'd14-a'])
    await store.outbox.markAsFailed('d13-failed', 'dead')
    await store.outbox.markAsPublishing('d14-publishing')

    // Everything sent on day 14; cleanup(7) on day 22 deletes what was sent before day 15.
    clock.advance(8 * DAY)
    const cleaned = await store.outbox.cleanup(7)
    expect(cleaned).toBe(7)
    const left = await partitions('outbox')
    expect(left).not.toContain('p20260311')
    expect(left).toEqual(expect.arrayContaining(['default', 'p20260312', 'p20260313']))
    // The kept partitions lost their sent rows to the DELETE path, nothing else.
    const rows = await pool.query<{ event_id: string; status: string }>(
      `SELECT event_id, status FROM "${schema}"."txbox_outbox" ORDER BY seq`,
    )
    expect(rows.rows).toEqual([
      { event_id: 'd12-pending', status: 'pending' },
      { event_id: 'd13-failed', status: 'failed' },
      { event_id: 'd14-publishing', status: 'publishing' },
    ])
    // No trace of the deleted or dropped events: their ids are new events again.
    expect(await idCount('outbox')).toBe(3)
    const reborn = await store.outbox.findOrCreate(event('d11-a'))
    expect(reborn.enqueuedAt).toEqual(clock.now())
    expect(reborn.status).toBe('pending')
    // The dead letter still holds its id.
    expect((await store.outbox.findOrCreate(event('d13-failed'))).status).toBe('failed')
  })

  it('cleanup keeps a partition holding a row sent at the cutoff exactly, and drops the inbox partitions the same way', async () => {
    clock.advance(DAY)
    await store.outbox.findOrCreateMany([event('x'), event('y')])
    await store.inbox.findOrCreate({ eventId: 'm1', subject: 's', payload: '{}' })
    await store.inbox.findOrCreate({ eventId: 'm2', subject: 's', payload: '{}' })
    await store.inbox.markAsProcessed('m1')
    await store.inbox.markAsProcessed('m2')
    await store.outbox.markAsSent('x')
    clock.advance(DAY)
    await store.outbox.markAsSent('y')
    // cutoff = y's sentAt exactly: y is not older than the retention, so its partition stays.
    clock.advance(7 * DAY)
    expect(await store.outbox.cleanup(7)).toBe(1)
    expect(await partitions('outbox')).toContain('p20260311')
    expect((await store.outbox.get('y'))?.status).toBe('sent')

    expect(await partitions('inbox')).toContain('p20260311')
    expect(await store.inbox.cleanup(7)).toBe(2)
    expect(await partitions('inbox')).not.toContain('p20260311')
    expect(await idCount('inbox')).toBe(0)
    expect((await store.inbox.findOrCreate({ eventId: 'm1', subject: 's', payload: '{}' })).deliveries).toBe(
      1,
    )
  })

  it('cleanup does not wait behind a transaction holding the table: the partition is dropped on a later run', async () => {
    clock.advance(DAY)
    await store.outbox.findOrCreate(event('x'))
    await store.outbox.markAsSent('x')
    clock.advance(8 * DAY)
    const holder = await pool.connect()
    try {
      await holder.query('BEGIN')
      await holder.query(`SELECT count(*) FROM "${schema}"."txbox_outbox"`)
      const started = performance.now()
      // The DETACH gives up after the lock timeout; the sent row is then deleted row by row.
      expect(await store.outbox.cleanup(7)).toBe(1)
      expect(performance.now() - started).toBeGreaterThanOrEqual(PARTITION_LOCK_TIMEOUT_MS - 50)
      expect(await partitions('outbox')).toContain('p20260311')
    } finally {
      await holder.query('ROLLBACK')
      holder.release()
    }
    expect(await store.outbox.cleanup(7)).toBe(0)
    expect(await partitions('outbox')).not.toContain('p20260311')
  })

  it('two processes running cleanup at once: one maintains, the other skips; no error, no row counted twice', async () => {
    clock.advance(DAY)
    await store.outbox.findOrCreateMany(Array.from({ length: 50 }, (_, i) => event(`x${i}`)))
    await sendAll(Array.from({ length: 50 }, (_, i) => `x${i}`))
    clock.advance(8 * DAY)
    const otherPool = newPool(1)
    try {
      const other = createPostgresStore({
        pool: otherPool,
        schema,
        clock: clock.now,
        partitioning: { interval: 'daily' },
      })
      const counts = await Promise.all([
        store.outbox.cleanup(7),
        other.outbox.cleanup(7),
        store.outbox.cleanup(7),
      ])
      expect(counts.reduce((a, b) => a + b, 0)).toBe(50)
      expect(await partitions('outbox')).not.toContain('p20260311')
      expect(await idCount('outbox')).toBe(0)
      // A pool of one connection is enough for the maintenance run.
      expect(await other.maintainPartitions()).toBeGreaterThanOrEqual(0)
    } finally {
      await otherPool.end()
    }
  })

  it('finishes a partition that a previous run detached but did not drop', async () => {
    clock.advance(DAY)
    await store.outbox.findOrCreateMany([event('x'), event('y')])
    await sendAll(['x', 'y'])
    // What a maintenance run leaves when it dies after the DETACH's commit.
    await pool.query(
      `ALTER TABLE "${schema}"."txbox_outbox" DETACH PARTITION "${schema}"."txbox_outbox_p20260311"`,
    )
    await pool.query(`ALTER TABLE "${schema}"."txbox_outbox_p20260311" RENAME TO "txbox_outbox_r20260311"`)
    expect(await idCount('outbox')).toBe(2)
    expect(await store.outbox.cleanup(7)).toBe(2)
    expect(await idCount('outbox')).toBe(0)
    const leftover = await pool.query(`SELECT to_regclass($1) AS t`, [`"${schema}"."txbox_outbox_r20260311"`])
    expect(leftover.rows[0]?.t).toBeNull()
  })

  it('a store without the option on partitioned tables fails its enqueue with a StorageError that names the fix', async () => {
    const plain = createPostgresStore({ pool, schema, clock: clock.now })
    const error = await plain.outbox.findOrCreate(event('x')).catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(StorageError)
    expect((error as StorageError).message).toMatch(/42P10.*partitioning: \{ interval: 'daily' \}/)
    expect(await plain.outbox.getCountByStatus()).toMatchObject({ pending: 0 })
  })

  it('a relay store without the option maintains the partitions; connectPostgres passes the option on', async () => {
    const connection = connectPostgres(url ?? '', {
      schema,
      clock: clock.now,
      partitioning: { interval: 'daily' },
    })
    try {
      clock.advance(DAY)
      await connection.store.outbox.findOrCreate(event('via-url'))
      await connection.store.outbox.markAsSent('via-url')
    } finally {
      await connection.close()
    }
    clock.advance(8 * DAY)
    // What a relay opened from a URL has: no partitioning option. It cleans up by partition.
    const relayStore = createPostgresStore({ pool, schema, clock: clock.now })
    expect(await relayStore.outbox.cleanup(7)).toBe(1)
    expect(await partitions('outbox')).not.toContain('p20260311')
    expect(await partitions('outbox')).toContain('p20260322')
  })

  it('refuses another interval on migrate(), changing nothing', async () => {
    const monthly = createPostgresStore({
      pool,
      schema,
      clock: clock.now,
      partitioning: { interval: 'monthly' },
    })
    await expect(monthly.migrate()).rejects.toThrow(ValidationError)
    await expect(monthly.migrate()).rejects.toThrow(/partitioned daily.*set it to 'daily'/)
    expect(await partitions('outbox')).toEqual(['default', 'p20260311', 'p20260312', 'p20260313', 'pold'])
  })
})
