/**
 * Focused runs behind the explanations in docs/BENCHMARKS.md: the adapter's statements taken
 * apart by hand, one variable at a time, so where the time goes is measured, not guessed.
 *   node dist/profile.js postgres   (TXBOX_POSTGRES_URL): pg_notify on/off
 *   node dist/profile.js mysql      (TXBOX_MYSQL_URL): padding, upsert and read-back
 */
import { connectMySql } from '@txbox/mysql'
import { connectPostgres } from '@txbox/postgres'
import { median } from './harness.js'
import { makeEvents } from './scenarios.js'
import { uniqueName } from './stores/names.js'

const rate = async (events: number, fn: () => Promise<void>): Promise<number> => {
  const started = performance.now()
  await fn()
  return events / ((performance.now() - started) / 1000)
}

const report = (results: Record<string, number[]>): void => {
  for (const [name, samples] of Object.entries(results)) {
    console.log(`${name.padEnd(60)} ${Math.round(median(samples))} events/s (median of ${samples.length})`)
  }
}

const postgres = async (url: string): Promise<void> => {
  const schemaOn = uniqueName('prof')
  const schemaOff = uniqueName('prof')
  const notifyOn = connectPostgres(url, { schema: schemaOn, notify: 'always', poolSize: 4 })
  const notifyOff = connectPostgres(url, { schema: schemaOff, notify: 'off', poolSize: 4 })
  const on = notifyOn.store
  const off = notifyOff.store
  // The raw statements write into the notify-off schema, on that store's own pool.
  const pool = notifyOff.client
  await on.migrate()
  await off.migrate()
  const rawInsert = `INSERT INTO "${schemaOff}"."txbox_outbox" (event_id, subject, payload, headers, status, enqueued_at, retry_count, available_at)
    VALUES ($1, $2, $3, NULL, 'pending', $4, 0, $4)`
  // The adapter's enqueue statement (packages/postgres/src/sql.ts, notify off), sent by hand:
  // separates what the statement costs in the server from what the adapter costs in Node.
  const t = `"${schemaOff}"."txbox_outbox"`
  const names =
    'seq, event_id, subject, payload, headers, status, enqueued_at, sent_at, error_message, retry_count, available_at, claimed_at, claimed_by, lease_until'
  const readList = names
    .split(', ')
    .map((name) =>
      name.endsWith('_at') || name === 'lease_until'
        ? `(extract(epoch FROM ${name}) * 1000)::float8 AS ${name}`
        : name === 'seq'
          ? 'seq::text AS seq'
          : name,
    )
    .join(', ')
  const adapterSql = `
      WITH input AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
          WITH ORDINALITY AS u(event_id, subject, payload, headers, available_at, ord)
      ), inserted AS (
        INSERT INTO ${t} (event_id, subject, payload, headers, status, enqueued_at, retry_count, available_at)
        SELECT event_id, subject, payload, headers, 'pending', $6::timestamptz, 0, available_at
        FROM input ORDER BY ord
        ON CONFLICT (event_id) DO NOTHING
        RETURNING ${readList}
      )
      SELECT ${names} FROM inserted
      UNION ALL
      SELECT ${readList} FROM ${t} WHERE event_id = ANY($1::text[])`
  const simpleReturning = `INSERT INTO ${t} (event_id, subject, payload, headers, status, enqueued_at, retry_count, available_at)
    VALUES ($1, $2, $3, NULL, 'pending', $4, 0, $4) ON CONFLICT (event_id) DO NOTHING RETURNING ${readList}`
  const results: Record<string, number[]> = {}
  const record = (name: string, value: number) => {
    results[name] ??= []
    results[name].push(value)
  }
  try {
    for (let run = 0; run < 5; run++) {
      const n = 1000
      const d = makeEvents(`sql-${run}`, n)
      record(
        "the adapter's CTE statement by hand (1 event)",
        await rate(n, async () => {
          for (const e of d) {
            const now = new Date()
            await pool.query(adapterSql, [[e.eventId], [e.subject], [e.payload], [null], [now], now])
          }
        }),
      )
      const p = makeEvents(`prep-${run}`, n)
      record(
        "the adapter's CTE statement, named (prepared once per connection)",
        await rate(n, async () => {
          for (const e of p) {
            const now = new Date()
            await pool.query({
              name: `bench_enqueue_${schemaOff}`,
              text: adapterSql,
              values: [[e.eventId], [e.subject], [e.payload], [null], [now], now],
            })
          }
        }),
      )
      const f = makeEvents(`ret-${run}`, n)
      record(
        'INSERT ... ON CONFLICT DO NOTHING RETURNING (1 event)',
        await rate(n, async () => {
          for (const e of f) await pool.query(simpleReturning, [e.eventId, e.subject, e.payload, new Date()])
        }),
      )
      const a = makeEvents(`on-${run}`, n)
      const b = makeEvents(`off-${run}`, n)
      const c = makeEvents(`raw-${run}`, n)
      record(
        "findOrCreate, notify: 'always'",
        await rate(n, async () => {
          for (const e of a) await on.outbox.findOrCreate(e)
        }),
      )
      record(
        "findOrCreate, notify: 'off'",
        await rate(n, async () => {
          for (const e of b) await off.outbox.findOrCreate(e)
        }),
      )
      record(
        'raw INSERT',
        await rate(n, async () => {
          for (const e of c) await pool.query(rawInsert, [e.eventId, e.subject, e.payload, new Date()])
        }),
      )
      const batches = (prefix: string) =>
        Array.from({ length: 20 }, (_, i) => makeEvents(`${prefix}-${run}-${i}`, 100))
      const bOn = batches('bon')
      const bOff = batches('boff')
      record(
        "findOrCreateMany(100), notify: 'always'",
        await rate(2000, async () => {
          for (const group of bOn) await on.outbox.findOrCreateMany(group)
        }),
      )
      record(
        "findOrCreateMany(100), notify: 'off'",
        await rate(2000, async () => {
          for (const group of bOff) await off.outbox.findOrCreateMany(group)
        }),
      )
    }
    report(results)
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS "${schemaOn}" CASCADE`)
    await pool.query(`DROP SCHEMA IF EXISTS "${schemaOff}" CASCADE`)
    await notifyOn.close()
    await notifyOff.close()
  }
}

/** Where a pg drain spends its time: claim vs mark, adapter vs the raw statements, 5,000 events each, alternating. */
const postgresDrain = async (url: string): Promise<void> => {
  const schema = uniqueName('prof')
  const connection = connectPostgres(url, { schema, poolSize: 4 })
  const { store, client: pool } = connection
  await store.migrate()
  const t = `"${schema}"."txbox_outbox"`
  const fill = async (tag: string) => {
    for (let i = 0; i < 10; i++) await store.outbox.findOrCreateMany(makeEvents(`${tag}-${i}`, 500))
  }
  const claimSql = `UPDATE ${t} SET status = 'publishing', claimed_by = $1, claimed_at = $2, lease_until = $3
    WHERE seq IN (SELECT seq FROM ${t} WHERE status = 'pending' AND available_at <= $2 ORDER BY seq LIMIT 100 FOR UPDATE SKIP LOCKED)
    RETURNING event_id, subject, payload, headers`
  const markSql = `UPDATE ${t} SET status = 'sent', sent_at = $2, claimed_by = NULL, lease_until = NULL
    WHERE event_id = ANY($1::text[]) AND claimed_by = $3`
  const ms: Record<string, number[]> = {}
  const add = (k: string, v: number) => {
    ms[k] ??= []
    ms[k].push(v)
  }
  try {
    for (let run = 0; run < 4; run++) {
      for (const side of run % 2 === 0 ? ['adapter', 'raw'] : ['raw', 'adapter']) {
        await fill(`${side}-${run}`)
        let claimMs = 0
        let markMs = 0
        for (;;) {
          let started = performance.now()
          let ids: string[]
          if (side === 'adapter') {
            ids = (await store.outbox.claim({ limit: 100, leaseMs: 60_000, workerId: 'w' })).map(
              (e) => e.eventId,
            )
          } else {
            const now = new Date()
            ids = (
              await pool.query<{ event_id: string }>(claimSql, ['w', now, new Date(now.getTime() + 60_000)])
            ).rows.map((r) => r.event_id)
          }
          claimMs += performance.now() - started
          if (ids.length === 0) break
          started = performance.now()
          if (side === 'adapter') await store.outbox.markManyAsSent(ids, { workerId: 'w' })
          else await pool.query(markSql, [ids, new Date(), 'w'])
          markMs += performance.now() - started
        }
        add(`${side} claim (ms per 100 events)`, claimMs / 50)
        add(`${side} markManyAsSent (ms per 100 events)`, markMs / 50)
      }
    }
    for (const [name, samples] of Object.entries(ms))
      console.log(`${name.padEnd(45)} ${median(samples).toFixed(2)}`)
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await connection.close()
  }
}

const dt = (): string => new Date().toISOString().slice(0, 23).replace('T', ' ')

const mysql = async (url: string): Promise<void> => {
  const prefix = `${uniqueName('prof')}_`
  const connection = connectMySql(url, { prefix, poolSize: 4 })
  const { store, client: pool } = connection
  await store.migrate()
  const t = `\`${prefix}outbox\``
  const columns = '(event_id, subject, payload, headers, status, enqueued_at, available_at, retry_count)'
  const insert = (n: number, upsert: boolean) =>
    `INSERT INTO ${t} ${columns} VALUES ${Array.from({ length: n }, () => "(?, ?, ?, ?, 'pending', ?, ?, 0)").join(', ')}${
      upsert ? ' ON DUPLICATE KEY UPDATE event_id = event_id' : ''
    }`
  const params = (events: ReturnType<typeof makeEvents>, pad: number) => {
    const now = dt()
    const rows = [...events]
    const last = events[events.length - 1]
    for (let i = 0; i < pad && last; i++) rows.push({ ...last, payload: '' })
    return rows.flatMap((e) => [e.eventId, e.subject, e.payload, null, now, now])
  }
  const select = (n: number) =>
    `SELECT * FROM ${t} WHERE event_id IN (${Array.from({ length: n }, () => '?').join(', ')})`
  const results: Record<string, number[]> = {}
  const record = (name: string, value: number) => {
    results[name] ??= []
    results[name].push(value)
  }
  try {
    for (let run = 0; run < 5; run++) {
      const batches = (tag: string) =>
        Array.from({ length: 20 }, (_, i) => makeEvents(`${tag}-${run}-${i}`, 100))
      const variants: Array<[string, (group: ReturnType<typeof makeEvents>) => Promise<unknown>]> = [
        ['adapter findOrCreateMany(100)', (g) => store.outbox.findOrCreateMany(g)],
        ['raw INSERT 100 rows', (g) => pool.execute(insert(100, false), params(g, 0))],
        ['raw INSERT 100 rows ON DUPLICATE KEY UPDATE', (g) => pool.execute(insert(100, true), params(g, 0))],
        [
          'raw INSERT 100 + 28 pad rows ON DUPLICATE KEY UPDATE',
          (g) => pool.execute(insert(128, true), params(g, 28)),
        ],
        [
          'raw INSERT 128 ODKU + SELECT 128 ids back',
          async (g) => {
            await pool.execute(insert(128, true), params(g, 28))
            const ids = g.map((e) => e.eventId)
            while (ids.length < 128) ids.push(ids[ids.length - 1] as string)
            await pool.execute(select(128), ids)
          },
        ],
      ]
      for (const [name, fn] of variants) {
        const groups = batches(name.replaceAll(/\W/g, '').slice(0, 12))
        record(
          name,
          await rate(2000, async () => {
            for (const g of groups) await fn(g)
          }),
        )
      }
      const singles = (tag: string) => makeEvents(`${tag}-${run}`, 300)
      const singleVariants: Array<[string, (e: ReturnType<typeof makeEvents>[number]) => Promise<unknown>]> =
        [
          ['adapter findOrCreate', (e) => store.outbox.findOrCreate(e)],
          ['raw INSERT 1 row', (e) => pool.execute(insert(1, false), params([e], 0))],
          ['raw INSERT 1 row ODKU', (e) => pool.execute(insert(1, true), params([e], 0))],
          [
            'raw INSERT 1 row ODKU + SELECT back',
            async (e) => {
              await pool.execute(insert(1, true), params([e], 0))
              await pool.execute(select(1), [e.eventId])
            },
          ],
        ]
      for (const [name, fn] of singleVariants) {
        const events = singles(name.replaceAll(/\W/g, '').slice(0, 12))
        record(
          name,
          await rate(300, async () => {
            for (const e of events) await fn(e)
          }),
        )
      }
    }
    report(results)
  } finally {
    await pool.query(`DROP TABLE IF EXISTS ${t}, \`${prefix}inbox\`, \`${prefix}schema_version\``)
    await connection.close()
  }
}

const main = async (): Promise<void> => {
  const which = process.argv[2] ?? 'postgres'
  const url = process.env[which === 'mysql' ? 'TXBOX_MYSQL_URL' : 'TXBOX_POSTGRES_URL']
  // postgres-drain: claim vs mark time, adapter vs raw
  if (!url) throw new Error(`the ${which} URL is not set`)
  if (which === 'mysql') await mysql(url)
  else if (which === 'postgres-drain') await postgresDrain(url)
  else await postgres(url)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
