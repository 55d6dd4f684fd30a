import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createNamespace, event, type Namespace, newPool, noServer, skipReason } from './helpers.js'

// "N claimers on their own connections drain M events exactly once" is the conformance case
// outbox.claim.disjoint-across-connections, run on every adapter; what stays here is
// PostgreSQL's own: SKIP LOCKED claims racing producers whose transactions roll back.
describe.skipIf(noServer)(`claim under contention${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  let ns: Namespace
  const pools: pg.Pool[] = []

  beforeAll(async () => {
    ns = await createNamespace()
  })

  afterAll(async () => {
    await Promise.all(pools.map((pool) => pool.end()))
    await ns?.dispose()
  })

  it('claimers racing producers (some in transactions that roll back) claim every committed event once', async () => {
    const table = `"${ns.schema}".txbox_outbox`
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
