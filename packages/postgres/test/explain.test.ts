import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CLAIM_PLANNER_SETTINGS, outboxSql, POSTGRES_SWEEP_BATCH } from '../src/sql.js'
import { createNamespace, event, type Namespace, noServer, skipReason } from './helpers.js'

interface PlanNode {
  'Node Type': string
  'Relation Name'?: string
  'Index Name'?: string
  Plans?: PlanNode[]
}

const nodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(nodes)]

type StatementResults = { rows: { 'QUERY PLAN'?: [{ Plan: PlanNode }] }[] }[]

/** The plan in the answers of a multi-statement claim (the claim ends with another SELECT). */
const explainedIn = (results: StatementResults): PlanNode[] => {
  const explained = results.find((result) => result.rows[0]?.['QUERY PLAN'] !== undefined)
  return nodes(explained!.rows[0]!['QUERY PLAN']![0].Plan)
}

const DAY = 86_400_000

describe.skipIf(noServer)(`query plans${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  let ns: Namespace
  const explain = async (text: string, values: unknown[]): Promise<PlanNode[]> => {
    const result = await ns.pool.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
      `EXPLAIN (FORMAT JSON) ${text}`,
      values,
    )
    const [explained] = result.rows[0]!['QUERY PLAN']
    return nodes(explained.Plan)
  }

  const explainClaim = async (text: string): Promise<PlanNode[]> => {
    const results = await ns.pool.query(
      text.replace(CLAIM_PLANNER_SETTINGS, `${CLAIM_PLANNER_SETTINGS} EXPLAIN (FORMAT JSON)`),
    )
    return explainedIn(results as unknown as StatementResults)
  }

  beforeAll(async () => {
    ns = await createNamespace()
    // A realistic table: a long history of sent rows (sent over 30 days) and a few live ones.
    await ns.store.outbox.findOrCreateMany(Array.from({ length: 10_000 }, (_, i) => event(`evt-${i}`)))
    const table = `"${ns.schema}".txbox_outbox`
    const now = ns.clock.peekMs()
    await ns.pool.query(
      `UPDATE ${table} SET status = 'sent', sent_at = $1::timestamptz - (seq % 30) * interval '1 day' WHERE seq <= 9500`,
      [new Date(now)],
    )
    await ns.pool.query(`ANALYZE ${table}`)
  })

  afterAll(async () => {
    await ns?.dispose()
  })

  it('claim walks the live-row partial indexes, never a sequential scan (both shapes)', async () => {
    const sql = outboxSql(ns.schema, 'txbox_')
    const now = new Date(ns.clock.peekMs())
    for (const [keyedLive, walked] of [
      [false, 'txbox_outbox_claimable_idx'],
      [true, 'txbox_outbox_unkeyed_claimable_idx'],
    ] as const) {
      const plan = await explainClaim(
        sql.claim({
          workerId: 'w',
          now,
          leaseUntil: new Date(now.getTime() + 30_000),
          limit: 100,
          deadLettersBlockKeys: true,
          keyedLive,
        }),
      )
      expect(plan.map((node) => node['Index Name'])).toContain(walked)
      expect(plan.filter((node) => node['Node Type'] === 'Seq Scan')).toEqual([])
    }
  })

  it('claim keeps the ordered index walk on a bulk-loaded table that was never analyzed', async () => {
    const fresh = await createNamespace()
    try {
      const table = `"${fresh.schema}".txbox_outbox`
      // Autovacuum must not analyze the table while the test looks at the plan.
      await fresh.pool.query(`ALTER TABLE ${table} SET (autovacuum_enabled = false)`)
      const now = new Date(fresh.clock.peekMs())
      await fresh.pool.query(
        `INSERT INTO ${table} (event_id, subject, payload, status, enqueued_at, available_at)
         SELECT 'bulk-' || g, 'orders.created', repeat('x', 200), 'pending', $1, $1
         FROM generate_series(1, 100000) g`,
        [now],
      )
      const claim = outboxSql(fresh.schema, 'txbox_').claim({
        workerId: 'w',
        now,
        leaseUntil: new Date(now.getTime() + 30_000),
        limit: 100,
        deadLettersBlockKeys: true,
        keyedLive: false,
      })
      const explainOn = async (text: string): Promise<PlanNode[]> =>
        explainedIn((await fresh.pool.query(text)) as unknown as StatementResults)
      const withoutSettings = claim.replace(CLAIM_PLANNER_SETTINGS, 'EXPLAIN (FORMAT JSON)')
      const unguarded = await explainOn(withoutSettings)
      // The hazard is real on this server: from its guesses the planner sorts every live row.
      expect(unguarded.map((node) => node['Node Type'])).toContain('Sort')
      const guarded = await explainOn(
        claim.replace(CLAIM_PLANNER_SETTINGS, `${CLAIM_PLANNER_SETTINGS} EXPLAIN (FORMAT JSON)`),
      )
      const types = guarded.map((node) => node['Node Type'])
      expect(types).not.toContain('Sort')
      expect(types).not.toContain('Bitmap Heap Scan')
      expect(types).not.toContain('Seq Scan')
      expect(guarded.map((node) => node['Index Name'])).toContain('txbox_outbox_claimable_idx')
      // And the adapter's own claim takes the first 100 in enqueue order.
      const claimed = await fresh.store.outbox.claim({ limit: 100, leaseMs: 30_000, workerId: 'w' })
      expect(claimed.map((event) => event.eventId)).toEqual(
        Array.from({ length: 100 }, (_, i) => `bulk-${i + 1}`),
      )
    } finally {
      await fresh.dispose()
    }
  })

  it("claim checks a keyed row's head with one probe of the key-head index, never a scan", async () => {
    const keyed = await createNamespace()
    try {
      // 500 keys with 10 unsent events each, behind a history of sent keyed rows.
      await keyed.store.outbox.findOrCreateMany(
        Array.from({ length: 10_000 }, (_, i) => event(`k-${i}`, { orderingKey: `key-${i % 500}` })),
      )
      const table = `"${keyed.schema}".txbox_outbox`
      await keyed.pool.query(`UPDATE ${table} SET status = 'sent', sent_at = enqueued_at WHERE seq <= 5000`)
      await keyed.pool.query(`ANALYZE ${table}`)
      const now = new Date(keyed.clock.peekMs())
      for (const deadLettersBlockKeys of [true, false]) {
        const claim = outboxSql(keyed.schema, 'txbox_').claim({
          workerId: 'w',
          now,
          leaseUntil: new Date(now.getTime() + 30_000),
          limit: 100,
          deadLettersBlockKeys,
          keyedLive: false,
        })
        const results = await keyed.pool.query(
          claim.replace(CLAIM_PLANNER_SETTINGS, `${CLAIM_PLANNER_SETTINGS} EXPLAIN (FORMAT JSON)`),
        )
        const plan = explainedIn(results as unknown as StatementResults)
        const indexes = plan.map((node) => node['Index Name'])
        expect(indexes).toContain('txbox_outbox_claimable_idx')
        expect(indexes).toContain('txbox_outbox_key_head_idx')
        expect(plan.filter((node) => node['Node Type'] === 'Seq Scan')).toEqual([])
        expect(plan.map((node) => node['Node Type'])).not.toContain('Hash Anti Join')
      }
      // And the claim takes the 500 heads, keySeq 6 of each (1-5 were sent), in enqueue order.
      const claimed = await keyed.store.outbox.claim({ limit: 10_000, leaseMs: 30_000, workerId: 'w' })
      expect(claimed.map((e) => e.eventId)).toEqual(Array.from({ length: 500 }, (_, i) => `k-${5000 + i}`))
      expect(new Set(claimed.map((e) => e.keySeq))).toEqual(new Set([11]))
    } finally {
      await keyed.dispose()
    }
  })

  it('findPending uses the same index', async () => {
    const sql = outboxSql(ns.schema, 'txbox_')
    const plan = await explain(sql.findPending, [new Date(ns.clock.peekMs()), 100])
    expect(plan.map((node) => node['Index Name'])).toContain('txbox_outbox_claimable_idx')
    expect(plan.filter((node) => node['Node Type'] === 'Seq Scan')).toEqual([])
  })

  it('cleanup finds old sent rows through the sent_at partial index', async () => {
    const sql = outboxSql(ns.schema, 'txbox_')
    const plan = await explain(sql.cleanupBatch, [
      new Date(ns.clock.peekMs() - 28 * DAY),
      POSTGRES_SWEEP_BATCH,
    ])
    expect(plan.map((node) => node['Index Name'])).toContain('txbox_outbox_sent_idx')
    expect(plan.filter((node) => node['Node Type'] === 'Seq Scan')).toEqual([])
  })
})
