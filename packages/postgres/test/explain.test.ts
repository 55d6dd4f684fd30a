import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { outboxSql } from '../src/sql.js'
import { createNamespace, event, type Namespace, noServer, skipReason } from './helpers.js'

interface PlanNode {
  'Node Type': string
  'Relation Name'?: string
  'Index Name'?: string
  Plans?: PlanNode[]
}

const nodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(nodes)]

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

  it('claim walks the live-row partial index, never a sequential scan', async () => {
    const sql = outboxSql(ns.schema, 'txbox_')
    const now = new Date(ns.clock.peekMs())
    const plan = await explain(sql.claim, ['w', now, new Date(now.getTime() + 30_000), 100])
    expect(plan.map((node) => node['Index Name'])).toContain('txbox_outbox_claimable_idx')
    expect(plan.filter((node) => node['Node Type'] === 'Seq Scan')).toEqual([])
  })

  it('findPending uses the same index', async () => {
    const sql = outboxSql(ns.schema, 'txbox_')
    const plan = await explain(sql.findPending, [new Date(ns.clock.peekMs()), 100])
    expect(plan.map((node) => node['Index Name'])).toContain('txbox_outbox_claimable_idx')
    expect(plan.filter((node) => node['Node Type'] === 'Seq Scan')).toEqual([])
  })

  it('cleanup finds old sent rows through the sent_at partial index', async () => {
    const sql = outboxSql(ns.schema, 'txbox_')
    const plan = await explain(sql.cleanupBatch, [new Date(ns.clock.peekMs() - 28 * DAY)])
    expect(plan.map((node) => node['Index Name'])).toContain('txbox_outbox_sent_idx')
    expect(plan.filter((node) => node['Node Type'] === 'Seq Scan')).toEqual([])
  })
})
