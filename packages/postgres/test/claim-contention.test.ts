import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createNamespace, event, type Namespace, newPool, noServer, skipReason } from './helpers.js'

const EVENTS = 10_000
const CLAIMERS = 8
const BATCH = 100

describe.skipIf(noServer)(`claim under contention${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  let ns: Namespace
  const pools: pg.Pool[] = []

  beforeAll(async () => {
    ns = await createNamespace()
    const events = Array.from({ length: EVENTS }, (_, i) => event(`evt-${String(i).padStart(5, '0')}`))
    await ns.store.outbox.findOrCreateMany(events)
  })

  afterAll(async () => {
    await Promise.all(pools.map((pool) => pool.end()))
    await ns?.dispose()
  })

  it(`${CLAIMERS} claimers on separate connections over ${EVENTS} events claim each exactly once`, async () => {
    // One pool of one connection per claimer: the claims really run in parallel sessions.
    const claimers = Array.from({ length: CLAIMERS }, (_, i) => {
      const pool = newPool(1)
      pools.push(pool)
      return { workerId: `worker-${i}`, outbox: ns.storeOn(pool).outbox, claimed: [] as string[], calls: 0 }
    })
    const started = performance.now()
    await Promise.all(
      claimers.map(async (claimer) => {
        for (;;) {
          const batch = await claimer.outbox.claim({
            limit: BATCH,
            leaseMs: 60_000,
            workerId: claimer.workerId,
          })
          claimer.calls++
          if (batch.length === 0) return
          // Each batch comes back in enqueue order.
          const ids = batch.map((e) => e.eventId)
          expect(ids).toEqual([...ids].sort())
          claimer.claimed.push(...ids)
        }
      }),
    )
    const elapsedMs = performance.now() - started

    const all = claimers.flatMap((claimer) => claimer.claimed)
    expect(all).toHaveLength(EVENTS)
    expect(new Set(all).size).toBe(EVENTS)

    // The raw rows agree: every event publishing, held by the worker that got it back.
    const raw = await ns.pool.query<{ status: string; claimed_by: string; count: number }>(
      `SELECT status, claimed_by, count(*)::int AS count FROM "${ns.schema}".txbox_outbox GROUP BY status, claimed_by`,
    )
    expect(raw.rows.every((row) => row.status === 'publishing')).toBe(true)
    const byWorker = new Map(raw.rows.map((row) => [row.claimed_by, row.count]))
    for (const claimer of claimers) expect(byWorker.get(claimer.workerId) ?? 0).toBe(claimer.claimed.length)
    expect(raw.rows.reduce((sum, row) => sum + row.count, 0)).toBe(EVENTS)

    const perWorker = claimers.map((claimer) => claimer.claimed.length)
    console.info(
      `[postgres contention] ${CLAIMERS} claimers x batch ${BATCH}: ${EVENTS} events in ${elapsedMs.toFixed(0)} ms ` +
        `(${Math.round((EVENTS / elapsedMs) * 1000)} events/s); per worker ${perWorker.join(', ')}`,
    )
  })

  it('claimers racing producers (some in transactions that roll back) claim every committed event once', async () => {
    const table = `"${ns.schema}".txbox_outbox`
    await ns.pool.query(`DELETE FROM ${table}`)
    const producers = 4
    const perProducer = 500
    const producerPool = newPool(producers)
    const claimerPool = newPool(4)
    pools.push(producerPool, claimerPool)
    const producerStore = ns.storeOn(producerPool)
    let producing = true
    const produced = Promise.all(
      Array.from({ length: producers }, async (_, p) => {
        for (let i = 0; i < perProducer; i += 10) {
          const batch = Array.from({ length: 10 }, (_, k) => event(`p${p}-${i + k}`))
          const client = await producerPool.connect()
          try {
            await client.query('BEGIN')
            await producerStore.outbox.findOrCreateMany(batch, { tx: client })
            // Every fifth batch rolls back: those events must never be claimed.
            await client.query(i % 50 === 40 ? 'ROLLBACK' : 'COMMIT')
          } finally {
            client.release()
          }
        }
      }),
    ).finally(() => {
      producing = false
    })
    const claimed: string[] = []
    const claimers = Array.from({ length: 4 }, async (_, c) => {
      const outbox = ns.storeOn(claimerPool).outbox
      for (;;) {
        const wasProducing = producing
        const batch = await outbox.claim({ limit: 25, leaseMs: 60_000, workerId: `c${c}` })
        claimed.push(...batch.map((e) => e.eventId))
        // Stop only after an empty claim that started once every producer had finished.
        if (batch.length === 0 && !wasProducing) return
      }
    })
    await Promise.all([produced, ...claimers])
    const committed = await ns.pool.query<{ event_id: string }>(`SELECT event_id FROM ${table}`)
    expect(committed.rowCount).toBe(producers * perProducer * 0.8)
    expect(new Set(claimed).size).toBe(claimed.length)
    expect(new Set(claimed)).toEqual(new Set(committed.rows.map((row) => row.event_id)))
  })
})
