import { ManualClock } from '@txbox/core'
import { createPostgresStore } from '@txbox/postgres'
import pg from 'pg'
import { loadAverage } from './machine.js'
import { uniqueName } from './stores/names.js'

/**
 * Retention at volume on PostgreSQL (issue 18): the same days of sent events on plain tables,
 * where `cleanup` deletes them in 1,000-row batches, and on daily partitions, where it drops
 * a whole day. Each simulated day inserts its events already `sent` (the cost measured is
 * retention, not the relay), then the next day's maintenance runs `cleanup(retentionDays)`
 * and a VACUUM of what it touched (the deletes leave dead tuples; on the partitioned layout,
 * the id table's forgotten ids): both are the price of the strategy. The clock is a
 * ManualClock, so days pass at once.
 */

export type RetentionLayout = 'delete' | 'partitions'

export interface RetentionOptions {
  readonly events: number
  readonly days: number
  readonly retentionDays: number
}

/** One layout's run. Times in seconds, sizes in bytes. */
export interface RetentionRow {
  readonly layout: RetentionLayout
  readonly events: number
  readonly days: number
  readonly retentionDays: number
  /** Events inserted per second (one INSERT ... SELECT per 50,000; claiming the ids too on partitions). */
  readonly insertPerSecond: number
  /** Rows cleanup reported removed, over the run. */
  readonly removed: number
  readonly cleanupSeconds: number
  readonly cleanupMaxSeconds: number
  readonly vacuumSeconds: number
  /** WAL written by cleanup and by the VACUUM after it, over the run. */
  readonly cleanupWalBytes: number
  readonly vacuumWalBytes: number
  /**
   * Heap (with TOAST, FSM, VM) and index bytes at the end, and the largest seen after a
   * cleanup; on the partitioned layout, every partition's and the id table's.
   */
  readonly tableBytes: number
  readonly indexBytes: number
  readonly peakTableBytes: number
  readonly peakIndexBytes: number
  /** Of the partitioned layout: the id table (heap + index), included in the sizes above. */
  readonly idTableBytes?: number
  /** Per day: cleanup seconds. */
  readonly cleanupByDay: number[]
  readonly load: { before: string; after: string }
}

const DAY = 86_400_000
const HOUR = 3_600_000
const INSERT_CHUNK = 50_000
/** A typical small event: an order id, an amount, a customer, some attributes (~210 bytes). */
const PAYLOAD = JSON.stringify({
  type: 'order.created',
  orderId: 'ord_0000000000000000',
  customerId: 'cus_00000000',
  amount: { value: 12999, currency: 'EUR' },
  lines: [{ sku: 'SKU-0001', quantity: 2 }],
  attributes: { channel: 'web', campaign: 'winter' },
})

const seconds = (from: number): number => (performance.now() - from) / 1000

/** The enqueue cost of the id table, through the store: events per second, medians of alternating runs. */
export interface EnqueueCostRow {
  readonly layout: RetentionLayout
  /** `findOrCreate`, one event per call (autocommit). */
  readonly onePerCall: number
  /** `findOrCreateMany`, 100 events per call. */
  readonly hundredPerCall: number
  readonly runs: number
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? 0
}

/**
 * What the partitioned layout (its id table) costs an enqueue: the store's own statements on both layouts,
 * one after the other in each run (so load changes hit both), 1,000 single enqueues and 100
 * batches of 100 per run and layout, one client each.
 */
export const runEnqueueCost = async (
  url: string,
  runs: number,
  log: (line: string) => void,
): Promise<EnqueueCostRow[]> => {
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  const layouts = ['delete', 'partitions'] as const
  const schemas = layouts.map((layout) => uniqueName(`enqueue_${layout}`))
  const stores = layouts.map((layout, i) =>
    createPostgresStore({
      pool,
      schema: schemas[i],
      notify: 'off',
      partitioning: layout === 'partitions' ? { interval: 'daily' } : undefined,
    }),
  )
  const one: number[][] = [[], []]
  const hundred: number[][] = [[], []]
  try {
    for (const store of stores) await store.migrate()
    for (let run = -1; run < runs; run++) {
      for (const [i, store] of stores.entries()) {
        let started = performance.now()
        for (let n = 0; n < 1000; n++)
          await store.outbox.findOrCreate({
            eventId: `one-${run}-${n}`,
            subject: 'orders.created',
            payload: PAYLOAD,
          })
        const oneRate = 1000 / seconds(started)
        started = performance.now()
        for (let b = 0; b < 100; b++)
          await store.outbox.findOrCreateMany(
            Array.from({ length: 100 }, (_, n) => ({
              eventId: `many-${run}-${b}-${n}`,
              subject: 'orders.created',
              payload: PAYLOAD,
            })),
          )
        const hundredRate = 10_000 / seconds(started)
        // Run -1 warms up connections, prepared statements and caches.
        if (run >= 0) {
          one[i]?.push(oneRate)
          hundred[i]?.push(hundredRate)
        }
      }
      log(`retention enqueue cost run ${run + 1}/${runs}; load ${loadAverage()}`)
    }
    return layouts.map((layout, i) => ({
      layout,
      onePerCall: median(one[i] ?? []),
      hundredPerCall: median(hundred[i] ?? []),
      runs,
    }))
  } finally {
    for (const schema of schemas)
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined)
    await pool.end()
  }
}

export const runRetention = async (
  url: string,
  layout: RetentionLayout,
  options: RetentionOptions,
  log: (line: string) => void,
): Promise<RetentionRow> => {
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  const schema = uniqueName(`retention_${layout}`)
  const start = Date.UTC(2026, 0, 1)
  const clock = new ManualClock(start + 30 * 60_000)
  const store = createPostgresStore({
    pool,
    schema,
    clock: clock.now,
    notify: 'off',
    partitioning: layout === 'partitions' ? { interval: 'daily', ahead: 2 } : undefined,
  })
  const table = `"${schema}"."txbox_outbox"`
  const ids = `"${schema}"."txbox_outbox_ids"`
  const perDay = Math.floor(options.events / options.days)
  const load = { before: loadAverage(), after: '' }
  let insertSeconds = 0
  let removed = 0
  let cleanupSeconds = 0
  let cleanupMaxSeconds = 0
  let vacuumSeconds = 0
  let cleanupWalBytes = 0
  let vacuumWalBytes = 0
  let peakTableBytes = 0
  let peakIndexBytes = 0
  let sizes = { table: 0, index: 0, idsTable: 0, idsIndex: 0 }
  const cleanupByDay: number[] = []

  const wal = async (): Promise<string> =>
    (await pool.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]?.lsn ?? '0/0'
  const walSince = async (lsn: string): Promise<number> =>
    Number(
      (
        await pool.query<{ bytes: string }>(
          'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::text AS bytes',
          [lsn],
        )
      ).rows[0]?.bytes ?? 0,
    )
  const measure = async () => {
    const tree =
      layout === 'partitions'
        ? `SELECT relid FROM pg_partition_tree('${table}')`
        : `SELECT '${table}'::regclass AS relid`
    const result = await pool.query<{ table: string; index: string; ids_table: string; ids_index: string }>(
      `SELECT (SELECT sum(pg_table_size(relid)) FROM (${tree}) t)::text AS table,
              (SELECT sum(pg_indexes_size(relid)) FROM (${tree}) t)::text AS index,
              ${layout === 'partitions' ? `pg_table_size('${ids}')::text` : `'0'`} AS ids_table,
              ${layout === 'partitions' ? `pg_indexes_size('${ids}')::text` : `'0'`} AS ids_index`,
    )
    const row = result.rows[0]
    sizes = {
      table: Number(row?.table ?? 0),
      index: Number(row?.index ?? 0),
      idsTable: Number(row?.ids_table ?? 0),
      idsIndex: Number(row?.ids_index ?? 0),
    }
  }

  try {
    await store.migrate()
    for (let day = 0; day < options.days; day++) {
      const dayStart = start + day * DAY
      clock.set(dayStart + 30 * 60_000)
      // Enqueued from 01:00 to 23:00, sent a minute later: a cleanup at 00:30 with a whole
      // number of days of retention removes exactly whole days on both layouts.
      const stepMs = (22 * HOUR) / perDay
      const inserting = performance.now()
      for (let from = 0; from < perDay; from += INSERT_CHUNK) {
        const to = Math.min(perDay, from + INSERT_CHUNK) - 1
        // On partitions, the ids are claimed in the id table by the same statement, as the
        // store's enqueue statements do.
        await pool.query(
          `WITH input AS (
             SELECT 'evt-' || $1::int || '-' || g AS event_id,
                    $3::timestamptz + g * $4::float8 * interval '1 millisecond' AS at
             FROM generate_series($5::int, $6::int) g
           )${layout === 'partitions' ? `, claimed AS (INSERT INTO ${ids} (event_id) SELECT event_id FROM input RETURNING event_id)` : ''}
           INSERT INTO ${table} (event_id, subject, payload, headers, status, enqueued_at, sent_at, retry_count, available_at)
           SELECT event_id, 'orders.created', $2::text, NULL, 'sent', at, at + interval '1 minute', 0, at
           FROM ${layout === 'partitions' ? 'claimed JOIN input USING (event_id)' : 'input'}`,
          [day, PAYLOAD, new Date(dayStart + HOUR), stepMs, from, to],
        )
      }
      insertSeconds += seconds(inserting)

      // The next day's maintenance, as the relay runs it.
      clock.set(dayStart + DAY + 30 * 60_000)
      const beforeCleanup = await wal()
      const cleaning = performance.now()
      removed += await store.outbox.cleanup(options.retentionDays)
      const took = seconds(cleaning)
      cleanupByDay.push(took)
      cleanupSeconds += took
      cleanupMaxSeconds = Math.max(cleanupMaxSeconds, took)
      cleanupWalBytes += await walSince(beforeCleanup)
      const beforeVacuum = await wal()
      const vacuuming = performance.now()
      await pool.query(layout === 'partitions' ? `VACUUM ${table}, ${ids}` : `VACUUM ${table}`)
      vacuumSeconds += seconds(vacuuming)
      vacuumWalBytes += await walSince(beforeVacuum)
      await measure()
      peakTableBytes = Math.max(peakTableBytes, sizes.table + sizes.idsTable)
      peakIndexBytes = Math.max(peakIndexBytes, sizes.index + sizes.idsIndex)
      log(
        `retention ${layout} day ${day + 1}/${options.days}: cleanup ${took.toFixed(2)} s, ` +
          `table ${(sizes.table / 2 ** 20).toFixed(0)} MiB, indexes ${(sizes.index / 2 ** 20).toFixed(0)} MiB` +
          (layout === 'partitions'
            ? `, id table ${((sizes.idsTable + sizes.idsIndex) / 2 ** 20).toFixed(0)} MiB`
            : '') +
          `; load ${loadAverage()}`,
      )
    }
    load.after = loadAverage()
    return {
      layout,
      events: perDay * options.days,
      days: options.days,
      retentionDays: options.retentionDays,
      insertPerSecond: (perDay * options.days) / insertSeconds,
      removed,
      cleanupSeconds,
      cleanupMaxSeconds,
      vacuumSeconds,
      cleanupWalBytes,
      vacuumWalBytes,
      // The id table (heap, primary key) counts in: the partitioned layout stores it in addition.
      tableBytes: sizes.table + sizes.idsTable,
      indexBytes: sizes.index + sizes.idsIndex,
      peakTableBytes,
      peakIndexBytes,
      ...(layout === 'partitions' ? { idTableBytes: sizes.idsTable + sizes.idsIndex } : {}),
      cleanupByDay,
      load,
    }
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined)
    await pool.end()
  }
}
