import type { ClaimOptions, OutboxEvent } from '@txbox/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { CLAIM_PLANNER_SETTINGS, KEYED_WINDOW, outboxSql } from '../src/sql.js'
import { createNamespace, event, type Namespace, noServer, skipReason } from './helpers.js'

// The claim's sources (sql.ts claimQuery): the unkeyed walk, the keyed window of
// KEYED_WINDOW x limit claimable rows, and past it the per-key heads of the skip scan. The
// conformance suite fixes what a claim returns; these cases put the events where only the
// skip scan finds them (a full window of blocked events in front), and check what the claim
// reads: the pending events of a key in flight are never walked one by one.

interface PlanNode {
  'Node Type': string
  'Index Name'?: string
  'Actual Loops'?: number
  'Actual Rows'?: number
  'Shared Hit Blocks'?: number
  Plans?: PlanNode[]
}

const nodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(nodes)]

describe.skipIf(noServer)(`keyed claim${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  let ns: Namespace
  let table: string

  beforeEach(async () => {
    ns = await createNamespace()
    table = `"${ns.schema}".txbox_outbox`
  })
  afterEach(async () => {
    await ns?.dispose()
  })

  const keyed = (eventId: string, orderingKey: string) => event(eventId, { orderingKey })
  /** `count` events of one key, `<key>-1` .. `<key>-<count>`, enqueued in that order. */
  const run = (key: string, count: number) =>
    Array.from({ length: count }, (_, i) => keyed(`${key}-${i + 1}`, key))
  const claim = async (limit: number, options: Partial<ClaimOptions> = {}): Promise<string[]> =>
    (await ns.store.outbox.claim({ limit, leaseMs: 60_000, workerId: 'w', ...options })).map(
      (e: OutboxEvent) => e.eventId,
    )
  /**
   * The repository claims with the keyed shape only after a claim saw a keyed event live
   * (sql.ts claimQuery): a keyed event due tomorrow makes the next claims take it.
   */
  const useKeyedShape = async () => {
    await ns.store.outbox.findOrCreate({
      ...keyed('primer', 'primer'),
      availableAt: new Date(ns.clock.peekMs() + 86_400_000),
    })
    expect(await claim(1)).toEqual([])
  }
  /** Sets the rows of these ids to a state the claim must see (what another relay left). */
  const set = (ids: readonly string[], assignments: string) =>
    ns.pool.query(`UPDATE ${table} SET ${assignments} WHERE event_id = ANY($1::text[])`, [ids])
  const inFlight = (ids: readonly string[]) =>
    set(ids, `status = 'publishing', claimed_by = 'other', lease_until = 'infinity'`)
  /** The claim's plan as it ran (EXPLAIN ANALYZE inside a transaction rolled back). */
  const explainClaim = async (limit: number): Promise<PlanNode[]> => {
    const now = new Date(ns.clock.peekMs())
    const text = outboxSql(ns.schema, 'txbox_').claim({
      workerId: 'w',
      now,
      leaseUntil: new Date(now.getTime() + 60_000),
      limit,
      deadLettersBlockKeys: true,
      keyedLive: true,
    })
    type Explained = { command: string; rows: { 'QUERY PLAN': [{ Plan: PlanNode }] }[] }
    const results = (await ns.pool.query(
      `BEGIN; ${text.replace(CLAIM_PLANNER_SETTINGS, `${CLAIM_PLANNER_SETTINGS} EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`)}; ROLLBACK`,
    )) as unknown as Explained[]
    const explained = results.find((result) => result.command === 'EXPLAIN')!
    return nodes(explained.rows[0]!['QUERY PLAN'][0].Plan)
  }
  const skipScanRan = (plan: PlanNode[]) =>
    plan.some((node) => node['Node Type'] === 'Recursive Union' && (node['Actual Loops'] ?? 0) > 0)

  it("a cold key's only event behind a hot key's backlog is claimed by the first claim, past a full window", async () => {
    await useKeyedShape()
    await ns.store.outbox.findOrCreateMany([...run('hot', 500), keyed('cold-1', 'cold')])
    await inFlight(['hot-1'])
    expect(await claim(10)).toEqual(['cold-1'])
  })

  it("the claim's reads do not grow with the backlog of a key in flight (plan figures, not time)", async () => {
    // 20 keys in flight, each with a backlog, then one claimable key; at two depths, each in
    // its own namespace (so the other's deleted rows are not in the indexes).
    const readsAt = async (depth: number): Promise<{ hits: number; headProbes: number }> => {
      const events = Array.from({ length: depth }, (_, i) =>
        Array.from({ length: 20 }, (_, k) => keyed(`k${k}-${i + 1}`, `k${k}`)),
      ).flat()
      await ns.store.outbox.findOrCreateMany([...events, keyed('free-1', 'free')])
      await inFlight(Array.from({ length: 20 }, (_, k) => `k${k}-1`))
      await ns.pool.query(`ANALYZE ${table}`)
      const plan = await explainClaim(10)
      expect(skipScanRan(plan)).toBe(true)
      expect(await claim(10)).toEqual(['free-1'])
      const headProbes = plan
        .filter((node) => node['Index Name'] === 'txbox_outbox_key_head_idx')
        .reduce((sum, node) => sum + (node['Actual Loops'] ?? 0), 0)
      return { hits: plan[0]!['Shared Hit Blocks']!, headProbes }
    }
    const shallow = await readsAt(40)
    await ns.dispose()
    ns = await createNamespace()
    table = `"${ns.schema}".txbox_outbox`
    const deep = await readsAt(400)
    // 780 then 7,980 blocked events: the walk of the claimable index probed every one of them
    // (10x the reads); here the window is 4 x limit rows, the skip scan one descent per key.
    expect(deep.headProbes).toBeLessThanOrEqual(KEYED_WINDOW * 10 + 3 * 21)
    expect(deep.hits).toBeLessThan(shallow.hits * 1.5)
  })

  it('unkeyed events behind a blocked keyed backlog are claimed at once, from their own index', async () => {
    await useKeyedShape()
    await ns.store.outbox.findOrCreateMany([...run('busy', 300), event('u-1'), event('u-2')])
    await inFlight(['busy-1'])
    const plan = await explainClaim(10)
    expect(plan.map((node) => node['Index Name'])).toContain('txbox_outbox_unkeyed_claimable_idx')
    expect(await claim(10)).toEqual(['u-1', 'u-2'])
  })

  it('keyed heads past the window come out in enqueue order, with the unkeyed events merged by seq', async () => {
    await useKeyedShape()
    await ns.store.outbox.findOrCreateMany([
      ...run('busy', 100),
      keyed('z-1', 'zz'),
      event('u-1'),
      keyed('a-1', 'aa'),
      keyed('a-2', 'aa'),
      event('u-2'),
    ])
    await inFlight(['busy-1'])
    // The skip scan visits keys in key order (aa, busy, zz); the claim answers enqueue order.
    expect(await claim(3)).toEqual(['z-1', 'u-1', 'a-1'])
  })

  it("dead letters past the window: 'block' holds their key, 'skip' lets the next event go", async () => {
    await useKeyedShape()
    await ns.store.outbox.findOrCreateMany([...run('busy', 100), ...run('dead', 3), keyed('cold-1', 'cold')])
    await inFlight(['busy-1'])
    await set(['dead-1'], `status = 'failed', error_message = 'boom'`)
    expect(await claim(2, { keyedDeadLetters: 'block' })).toEqual(['cold-1'])
    await set(['cold-1'], `status = 'sent'`)
    expect(await claim(2, { keyedDeadLetters: 'skip' })).toEqual(['dead-2'])
  })

  it('an expired publishing head past the window is claimed again, never its successor', async () => {
    await useKeyedShape()
    await ns.store.outbox.findOrCreateMany([...run('busy', 100), ...run('late', 3)])
    await inFlight(['busy-1'])
    // Its relay died: the lease ran out a millisecond ago by the store's clock.
    await ns.pool.query(
      `UPDATE ${table} SET status = 'publishing', claimed_by = 'gone', lease_until = $1 WHERE event_id = 'late-1'`,
      [new Date(ns.clock.peekMs() - 1)],
    )
    expect(await claim(2)).toEqual(['late-1'])
    expect(await claim(2)).toEqual([])
  })

  it("under 'skip', a later event in flight past the window is reclaimed on expiry; the redriven dead letter below it waits", async () => {
    await useKeyedShape()
    await ns.store.outbox.findOrCreateMany([...run('busy', 100), ...run('redo', 3)])
    await inFlight(['busy-1'])
    // redo-1 was a dead letter, skipped; redo-2 was claimed; then redo-1 was redriven.
    await set(['redo-1'], `error_message = 'boom'`)
    await ns.pool.query(
      `UPDATE ${table} SET status = 'publishing', claimed_by = 'gone', lease_until = $1 WHERE event_id = 'redo-2'`,
      [new Date(ns.clock.peekMs() + 1_000)],
    )
    expect(await claim(2, { keyedDeadLetters: 'skip' })).toEqual([])
    ns.clock.advance(1_000)
    expect(await claim(2, { keyedDeadLetters: 'skip' })).toEqual(['redo-2'])
    await ns.store.outbox.markAsSent('redo-2', { workerId: 'w' })
    expect(await claim(2, { keyedDeadLetters: 'skip' })).toEqual(['redo-1'])
  })

  it("a claimer finds heads past the window when another claimer holds the window's heads locked", async () => {
    await useKeyedShape()
    const limit = 5
    const front = Array.from({ length: KEYED_WINDOW * limit }, (_, i) => keyed(`front-${i}-1`, `front-${i}`))
    await ns.store.outbox.findOrCreateMany([...front, ...run('back', 2), keyed('last-1', 'last')])
    const holder = await ns.pool.connect()
    try {
      await holder.query('BEGIN')
      // What a concurrent claim holds while its statement runs: the row locks on the heads.
      await holder.query(`SELECT 1 FROM ${table} WHERE event_id LIKE 'front-%' FOR UPDATE`)
      expect(await claim(limit)).toEqual(['back-1', 'last-1'])
    } finally {
      await holder.query('ROLLBACK')
      holder.release()
    }
  })

  it('many shallow keys are served by the window: the skip scan does not run', async () => {
    await useKeyedShape()
    await ns.store.outbox.findOrCreateMany(Array.from({ length: 1000 }, (_, i) => keyed(`s-${i}`, `s-${i}`)))
    await ns.pool.query(`ANALYZE ${table}`)
    const plan = await explainClaim(10)
    expect(skipScanRan(plan)).toBe(false)
    expect(await claim(10)).toEqual(Array.from({ length: 10 }, (_, i) => `s-${i}`))
  })

  it('with a keyed event live, unkeyed events go oldest first up to the limit, skipping one another claimer holds', async () => {
    await useKeyedShape()
    await ns.store.outbox.findOrCreateMany([
      ...run('busy', 50),
      ...Array.from({ length: 6 }, (_, i) => event(`u-${i}`)),
    ])
    await inFlight(['busy-1'])
    const holder = await ns.pool.connect()
    try {
      await holder.query('BEGIN')
      await holder.query(`SELECT 1 FROM ${table} WHERE event_id = 'u-0' FOR UPDATE`)
      expect(await claim(3)).toEqual(['u-1', 'u-2', 'u-3'])
    } finally {
      await holder.query('ROLLBACK')
      holder.release()
    }
    expect(await claim(3)).toEqual(['u-0', 'u-4', 'u-5'])
  })

  it('an unkeyed outbox never reads the keyed window', async () => {
    await ns.store.outbox.findOrCreateMany(Array.from({ length: 200 }, (_, i) => event(`u-${i}`)))
    const plan = await explainClaim(10)
    // The claimable index is read only to merge the claimed rows, never for a window of 40.
    const read = plan
      .filter((node) => node['Index Name'] === 'txbox_outbox_claimable_idx')
      .map((node) => node['Actual Rows'] ?? 0)
    expect(Math.max(...read)).toBeLessThanOrEqual(10)
    expect(await claim(10)).toEqual(Array.from({ length: 10 }, (_, i) => `u-${i}`))
  })
})
