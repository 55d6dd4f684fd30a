import { LeaseLostError, type OutboxEvent } from '@txbox/core'
import type pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createNamespace, event, type Namespace, newPool, noServer, skipReason } from './helpers.js'

// The cases every store passes are the conformance suite's outbox.ordering.*; what stays here
// is PostgreSQL's own: the counter rows and their locks, the SQL of the head check under
// concurrent transactions, and what the statements answer without reading back.
describe.skipIf(noServer)(`ordering keys${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
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

  const keyed = (eventId: string, orderingKey: string, extra: Record<string, unknown> = {}) =>
    event(eventId, { orderingKey, ...extra })
  const numbering = (events: readonly OutboxEvent[]) =>
    events.map((e) => [e.eventId, e.orderingKey, e.keySeq] as const)
  const counter = async (key: string): Promise<number | undefined> => {
    const result = await ns.pool.query<{ last_seq: string }>(
      `SELECT last_seq FROM "${ns.schema}".txbox_outbox_keys WHERE ordering_key = $1`,
      [key],
    )
    return result.rows[0] === undefined ? undefined : Number(result.rows[0].last_seq)
  }

  /** Resolves once some session of this test waits on a lock (polled, with a deadline). */
  const someoneWaitsOnALock = async () => {
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      const waiting = await other.query(
        `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%${ns.schema}%'`,
      )
      if (waiting.rowCount) return
      await new Promise((resolve) => setImmediate(resolve))
    }
    throw new Error('no session waited on a lock within 10 s')
  }

  it("numbers a key's events in input order and answers them exactly as stored; unkeyed events get no number", async () => {
    const { outbox } = ns.store
    const created = await outbox.findOrCreateMany([
      keyed('num-a1', 'num-order-1'),
      event('num-u1'),
      keyed('num-b1', 'num-order-2'),
      keyed('num-a2', 'num-order-1'),
      keyed('num-a3', 'num-order-1', { availableAt: new Date(ns.clock.peekMs() + 60_000) }),
    ])
    expect(numbering(created)).toEqual([
      ['num-a1', 'num-order-1', 1],
      ['num-u1', undefined, undefined],
      ['num-b1', 'num-order-2', 1],
      ['num-a2', 'num-order-1', 2],
      ['num-a3', 'num-order-1', 3],
    ])
    const single = await outbox.findOrCreate(keyed('num-a4', 'num-order-1'))
    expect(single.keySeq).toBe(4)
    // Built from what was sent plus the numbers the statement answered: equal to the rows.
    for (const answered of [...created, single]) {
      expect(answered).toEqual(await outbox.get(answered.eventId))
    }
    expect(Object.keys(created[1]!)).not.toContain('keySeq')
    expect(Object.keys(created[1]!)).not.toContain('orderingKey')
    expect(await counter('num-order-1')).toBe(4)
  })

  it('a duplicate id answers the stored event and its keySeq, never renumbered; its number is a gap', async () => {
    const { outbox } = ns.store
    const first = await outbox.findOrCreate(keyed('dup-1', 'dup-key', { payload: 'first' }))
    expect(first.keySeq).toBe(1)
    const again = await outbox.findOrCreate(keyed('dup-1', 'dup-key', { payload: 'second' }))
    expect(again).toEqual(first)
    const batch = await outbox.findOrCreateMany([keyed('dup-2', 'dup-key'), keyed('dup-1', 'dup-key')])
    expect(batch[1]).toEqual(first)
    const later = await outbox.findOrCreate(keyed('dup-3', 'dup-key'))
    expect(batch[0]!.keySeq).toBeGreaterThan(1)
    expect(later.keySeq).toBeGreaterThan(batch[0]!.keySeq!)
    expect(await outbox.get('dup-1')).toEqual(first)
    // An id stored without a key stays unkeyed when it is enqueued again with one.
    await outbox.findOrCreate(event('dup-plain'))
    const plainAgain = await outbox.findOrCreate(keyed('dup-plain', 'dup-key'))
    expect(plainAgain.orderingKey).toBeUndefined()
    expect(plainAgain.keySeq).toBeUndefined()
  })

  it("the key's counter outlives cleanup: a key whose events were all deleted never restarts at 1", async () => {
    const { outbox } = ns.store
    await outbox.findOrCreateMany([keyed('clean-1', 'clean-key'), keyed('clean-2', 'clean-key')])
    for (const id of ['clean-1', 'clean-2']) {
      const [claimed] = (await outbox.claim({ limit: 10_000, leaseMs: 1000, workerId: 'w' })).filter(
        (e) => e.orderingKey === 'clean-key',
      )
      expect(claimed?.eventId).toBe(id)
      await outbox.markAsSent(id, { workerId: 'w' })
    }
    ns.clock.advance(3 * 86_400_000)
    expect(await outbox.cleanup(1)).toBeGreaterThanOrEqual(2)
    expect(await outbox.get('clean-1')).toBeNull()
    expect((await outbox.findOrCreate(keyed('clean-3', 'clean-key'))).keySeq).toBe(3)
  })

  it('keys are compared byte for byte (COLLATE "C"): case, accents and long Unicode keys are their own keys', async () => {
    const { outbox } = ns.store
    const long = `${'\u{1F600}'.repeat(127)}x` // 255 UTF-16 code units, 4-byte UTF-8 characters
    const keys = ['Case', 'case', 'CASE', '\u00e9', 'e\u0301', 'stra\u00dfe', 'strasse', long]
    const created = await outbox.findOrCreateMany(keys.map((key, i) => keyed(`exact-${i}`, key)))
    expect(created.map((e) => e.keySeq)).toEqual(keys.map(() => 1))
    for (const [i, key] of keys.entries()) {
      expect((await outbox.get(`exact-${i}`))?.orderingKey).toBe(key)
      expect(await counter(key)).toBe(1)
    }
    expect(long).toHaveLength(255)
    // Each is the head of its own key: one claim takes them all.
    const claimed = await outbox.claim({ limit: 10_000, leaseMs: 1000, workerId: 'w' })
    expect(claimed.filter((e) => e.eventId.startsWith('exact-')).map((e) => e.orderingKey)).toEqual(keys)
  })

  it('a second transaction enqueuing the same key waits for the first; keySeq follows commit order', async () => {
    const second = ns.storeOn(other)
    const holder = await ns.pool.connect()
    try {
      await holder.query('BEGIN')
      const first = await ns.store.outbox.findOrCreate(keyed('wait-1', 'wait-key'), { tx: holder })
      expect(first.keySeq).toBe(1)
      const waiting = second.outbox.findOrCreate(keyed('wait-2', 'wait-key'))
      let settled = false
      void waiting.finally(() => {
        settled = true
      })
      await someoneWaitsOnALock()
      // Other keys and unkeyed events do not wait.
      expect((await second.outbox.findOrCreate(keyed('wait-other', 'wait-other-key'))).keySeq).toBe(1)
      await second.outbox.findOrCreate(event('wait-plain'))
      expect(settled).toBe(false)
      await holder.query('COMMIT')
      expect((await waiting).keySeq).toBe(2)
    } finally {
      holder.release()
    }
  })

  it("a rolled-back enqueue's number is taken again by the enqueue that waited for it (it was never visible)", async () => {
    const second = ns.storeOn(other)
    const holder = await ns.pool.connect()
    try {
      await holder.query('BEGIN')
      await ns.store.outbox.findOrCreateMany([keyed('rb-1', 'rb-key'), keyed('rb-2', 'rb-key')], {
        tx: holder,
      })
      const waiting = second.outbox.findOrCreate(keyed('rb-3', 'rb-key'))
      await someoneWaitsOnALock()
      await holder.query('ROLLBACK')
      expect((await waiting).keySeq).toBe(1)
    } finally {
      holder.release()
    }
    expect(await ns.store.outbox.get('rb-1')).toBeNull()
    expect(await counter('rb-key')).toBe(1)
  })

  it('concurrent batches sharing keys and ids in opposite orders never deadlock; each key numbered without repeats', async () => {
    const keys = Array.from({ length: 40 }, (_, i) => `mesh-${i}`)
    const batches = Array.from({ length: 8 }, (_, b) => {
      const ordered = b % 2 === 0 ? keys : [...keys].reverse()
      // Per key: an id of this batch, and an id every batch shares (a duplicate for all but one).
      return ordered.flatMap((key) => [keyed(`${key}-b${b}`, key), keyed(`${key}-shared`, key)])
    })
    const stores = [ns.store, ns.storeOn(other)]
    const results = await Promise.all(
      batches.map(async (batch, b) => {
        const store = stores[b % 2]!
        // Half in explicit transactions that hold their counter locks a little longer.
        if (b % 4 < 2) return store.outbox.findOrCreateMany(batch)
        return store.transaction(() => store.outbox.findOrCreateMany(batch))
      }),
    )
    for (const result of results) expect(result).toHaveLength(80)
    const rows = await ns.pool.query<{ ordering_key: string; key_seq: string }>(
      `SELECT ordering_key, key_seq FROM "${ns.schema}".txbox_outbox WHERE ordering_key LIKE 'mesh-%'`,
    )
    expect(rows.rowCount).toBe(keys.length * 9)
    const seen = new Set(rows.rows.map((row) => `${row.ordering_key}#${row.key_seq}`))
    expect(seen.size).toBe(rows.rowCount)
    // 16 numbers taken per key (7 of them for duplicates of the shared id: gaps).
    for (const key of keys) expect(await counter(key)).toBe(16)
  })

  describe('claim', () => {
    const claimAll = (workerId = 'w') => ns.store.outbox.claim({ limit: 10_000, leaseMs: 60_000, workerId })
    const ofKey = (events: readonly OutboxEvent[], key: string) =>
      events.filter((e) => e.orderingKey === key).map((e) => e.eventId)

    it('skips a head another claimer holds locked, and does not promote its successor', async () => {
      await ns.store.outbox.findOrCreateMany([
        keyed('lock-a1', 'lock-a'),
        keyed('lock-a2', 'lock-a'),
        keyed('lock-b1', 'lock-b'),
      ])
      const holder = await ns.pool.connect()
      try {
        await holder.query('BEGIN')
        // What a concurrent claim holds while its statement runs: the row lock on the head.
        await holder.query(`SELECT 1 FROM "${ns.schema}".txbox_outbox WHERE event_id = 'lock-a1' FOR UPDATE`)
        const claimed = await ns
          .storeOn(other)
          .outbox.claim({ limit: 10_000, leaseMs: 60_000, workerId: 'c' })
        expect(ofKey(claimed, 'lock-a')).toEqual([])
        expect(ofKey(claimed, 'lock-b')).toEqual(['lock-b1'])
      } finally {
        await holder.query('ROLLBACK')
        holder.release()
      }
      expect(ofKey(await claimAll(), 'lock-a')).toEqual(['lock-a1'])
    })

    it('a head marked sent by a transaction not yet committed still holds its key; after the commit its successor goes', async () => {
      await ns.store.outbox.findOrCreateMany([keyed('mark-1', 'mark-key'), keyed('mark-2', 'mark-key')])
      expect(ofKey(await claimAll('m'), 'mark-key')).toEqual(['mark-1'])
      const holder = await ns.pool.connect()
      try {
        await holder.query('BEGIN')
        await holder.query(`UPDATE "${ns.schema}".txbox_outbox SET status = 'sent' WHERE event_id = 'mark-1'`)
        expect(ofKey(await claimAll(), 'mark-key')).toEqual([])
        await holder.query('COMMIT')
      } finally {
        holder.release()
      }
      expect(ofKey(await claimAll(), 'mark-key')).toEqual(['mark-2'])
    })

    it('a successor being claimed by another claimer (locked, not committed) is taken by neither, nor is the next one', async () => {
      await ns.store.outbox.findOrCreateMany([
        keyed('succ-1', 'succ-key'),
        keyed('succ-2', 'succ-key'),
        keyed('succ-3', 'succ-key'),
      ])
      expect(ofKey(await claimAll('s'), 'succ-key')).toEqual(['succ-1'])
      await ns.store.outbox.markAsSent('succ-1', { workerId: 's' })
      const holder = await ns.pool.connect()
      try {
        await holder.query('BEGIN')
        await holder.query(
          `UPDATE "${ns.schema}".txbox_outbox SET status = 'publishing', claimed_by = 'x', lease_until = 'infinity' WHERE event_id = 'succ-2'`,
        )
        expect(ofKey(await claimAll(), 'succ-key')).toEqual([])
        await holder.query('ROLLBACK')
      } finally {
        holder.release()
      }
      expect(ofKey(await claimAll(), 'succ-key')).toEqual(['succ-2'])
    })

    it('a wakeup does not count a due event held back by its head as claimable (no busy loop)', async () => {
      await ns.store.outbox.findOrCreateMany([keyed('wk-1', 'wk-key'), keyed('wk-2', 'wk-key')])
      const wakeup = ns.store.createWakeup()
      try {
        // Drain everything claimable, so only wk-2 is left due (behind its publishing head).
        await claimAll('wk')
        expect(await ns.store.outbox.get('wk-2')).toMatchObject({ status: 'pending', keySeq: 2 })
        await expect(wakeup.wait({ timeoutMs: 50 })).resolves.toBe(false)
        await ns.store.outbox.markAsFailed('wk-1', 'dead', { workerId: 'wk' })
        // A dead letter holds its key by default too.
        await expect(wakeup.wait({ timeoutMs: 50 })).resolves.toBe(false)
        await ns.store.outbox.requeueFailed(['wk-1'])
        await expect(wakeup.wait({ timeoutMs: 50 })).resolves.toBe(true)
      } finally {
        await wakeup.close()
      }
    })
  })

  it('claimers racing producers, marks, retries and expiring leases never have two events of a key publishing at once, and claim each key in keySeq order', async () => {
    const table = `"${ns.schema}".txbox_outbox`
    // The invariant, enforced by the server at every statement of the race: a second
    // publishing row of a key makes the claim that writes it fail. And a log of every move to
    // publishing, in the order the moves happened (claims of one key are serialized by it).
    await ns.pool.query(`
      CREATE UNIQUE INDEX one_in_flight_per_key ON ${table} (ordering_key)
        WHERE status = 'publishing' AND ordering_key LIKE 'race-%';
      CREATE TABLE "${ns.schema}".claim_log (n bigserial, ordering_key text, key_seq bigint);
      CREATE FUNCTION "${ns.schema}".log_claim() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO "${ns.schema}".claim_log (ordering_key, key_seq) VALUES (NEW.ordering_key, NEW.key_seq);
          RETURN NEW;
        END $$;
      CREATE TRIGGER log_claim AFTER UPDATE ON ${table} FOR EACH ROW
        WHEN (NEW.status = 'publishing' AND NEW.ordering_key LIKE 'race-%') EXECUTE FUNCTION "${ns.schema}".log_claim();
    `)
    try {
      const keys = Array.from({ length: 12 }, (_, i) => `race-${i}`)
      const perKey = 15
      const stores = [ns.store, ns.storeOn(other)]
      // A deterministic sequence of choices (no Math.random: a failure replays).
      let state = 42
      const next = () => {
        state = (state * 1_103_515_245 + 12_345) % 2_147_483_648
        return state / 2_147_483_648
      }
      ns.clock.setAutoAdvance(1)
      let producing = true
      const produced = (async () => {
        for (let round = 0; round < perKey; round++) {
          const batch = keys.map((key) => keyed(`${key}-${round}`, key))
          batch.push(event(`race-plain-${round}`))
          await stores[round % 2]!.outbox.findOrCreateMany(round % 3 === 0 ? batch.reverse() : batch)
        }
      })().finally(() => {
        producing = false
      })
      const total = keys.length * perKey + perKey
      const deadline = Date.now() + 60_000
      const claimers = Array.from({ length: 4 }, async (_, c) => {
        const { outbox } = stores[c % 2]!
        const workerId = `racer-${c}`
        for (;;) {
          const wasProducing = producing
          const batch = await outbox.claim({ limit: 5, leaseMs: 40, workerId })
          for (const claimed of batch) {
            const roll = next()
            try {
              if (roll < 0.7) await outbox.markAsSent(claimed.eventId, { workerId })
              else if (roll < 0.9)
                await outbox.retryLater(claimed.eventId, { errorMessage: 'again', delayMs: 5, workerId })
              // else: abandoned; its lease expires and someone takes it again.
            } catch (error) {
              // Our lease expired and another claimer took the event meanwhile.
              if (!(error instanceof LeaseLostError)) throw error
            }
          }
          const sent = await ns.pool.query<{ count: number }>(
            `SELECT count(*)::int AS count FROM ${table} WHERE event_id LIKE 'race-%' AND status = 'sent'`,
          )
          if (!wasProducing && sent.rows[0]!.count === total) return
          if (Date.now() > deadline)
            throw new Error(`not drained in 60 s: ${sent.rows[0]!.count} of ${total} sent`)
        }
      })
      await Promise.all([produced, ...claimers])
      const log = await ns.pool.query<{ ordering_key: string; key_seq: string }>(
        `SELECT ordering_key, key_seq FROM "${ns.schema}".claim_log ORDER BY n`,
      )
      const perKeyLog = new Map<string, number[]>()
      for (const row of log.rows) {
        const seqs = perKeyLog.get(row.ordering_key) ?? []
        seqs.push(Number(row.key_seq))
        perKeyLog.set(row.ordering_key, seqs)
      }
      for (const key of keys) {
        const seqs = perKeyLog.get(key) ?? []
        // Every event claimed at least once, in keySeq order (a repeat is a retry or a reclaim).
        expect(seqs.filter((seq, i) => i > 0 && seq < seqs[i - 1]!)).toEqual([])
        expect(new Set(seqs)).toEqual(new Set(Array.from({ length: perKey }, (_, i) => i + 1)))
      }
    } finally {
      ns.clock.setAutoAdvance(0)
    }
  })
})
