import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { EventNotFoundError, ManualClock, type OutboxEvent } from '@txbox/core'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import { createSqliteStore } from '../src/index.js'
import { outboxSql, tablesFor } from '../src/sql.js'
import { event, LEASE, openStore, tempDirectory } from './helpers.js'
import { betterSqlite3Entry, compileForProcesses } from './process-harness.js'

const temp = tempDirectory()
afterAll(() => temp.cleanup())

const keyed = (eventId: string, orderingKey: string) => ({ ...event(eventId), orderingKey })
const seqs = (events: readonly OutboxEvent[]) => events.map((e) => [e.eventId, e.keySeq])

describe('sqlite ordering keys: keySeq', () => {
  it('numbers an event by its seq: per key increasing in input order, keys case-sensitive, never reused after cleanup deleted every event of the key', async () => {
    const clock = new ManualClock()
    const { db, store } = await openStore(':memory:', { clock: clock.now })
    expect(
      seqs(await store.outbox.findOrCreateMany([keyed('a1', 'A'), keyed('x1', 'a'), keyed('a2', 'A')])),
    ).toEqual([
      ['a1', 1],
      ['x1', 2],
      ['a2', 3],
    ])
    expect((await store.outbox.findOrCreate(keyed('a3', 'A'))).keySeq).toBe(4)
    for (const id of ['a1', 'a2', 'a3']) await store.outbox.markAsSent(id)
    clock.advance(3 * 86_400_000)
    expect(await store.outbox.cleanup(1)).toBe(3)
    expect(db.prepare("SELECT COUNT(*) FROM txbox_outbox WHERE ordering_key = 'A'").pluck().get()).toBe(0)
    // The newest seqs were deleted too: AUTOINCREMENT still goes on above them.
    expect((await store.outbox.findOrCreate(keyed('a4', 'A'))).keySeq).toBe(5)
    expect(await store.outbox.get('a4')).toMatchObject({ orderingKey: 'A', keySeq: 5 })
    db.close()
  })

  it('answers a duplicate id with the stored event and its keySeq; the key goes on after a gap', async () => {
    const { db, store } = await openStore(':memory:')
    const first = await store.outbox.findOrCreate({ ...keyed('dup', 'K'), payload: 'first' })
    const [again, next] = await store.outbox.findOrCreateMany([
      { ...keyed('dup', 'K'), payload: 'second' },
      keyed('after', 'K'),
    ])
    expect(again).toEqual(first)
    expect(await store.outbox.get('dup')).toEqual(first)
    // The skipped duplicate's seq is a gap (allowed); the next event is still after it.
    expect(next?.keySeq).toBeGreaterThan(first.keySeq ?? Number.POSITIVE_INFINITY)
    expect(await store.outbox.get('after')).toEqual(next)
    db.close()
  })

  it('rolls a keySeq back with the caller transaction (never seen outside it), and stores keys of any length and script exactly', async () => {
    const { db, store } = await openStore(':memory:')
    await expect(
      store.transaction(async (tx) => {
        expect((await store.outbox.findOrCreate(keyed('gone', 'K'), { tx })).keySeq).toBe(1)
        throw new Error('business rule')
      }),
    ).rejects.toThrow('business rule')
    expect(await store.outbox.get('gone')).toBeNull()
    expect((await store.outbox.findOrCreate(keyed('kept', 'K'))).keySeq).toBe(1)
    const long = `${'ключ🙂'.repeat(42)}abc`
    expect(long.length).toBe(255)
    expect(await store.outbox.findOrCreate(keyed('long', long))).toMatchObject({
      orderingKey: long,
      keySeq: 2,
    })
    expect((await store.outbox.get('long'))?.orderingKey).toBe(long)
    db.close()
  })

  it('gives increasing keySeqs in commit order to two OS processes enqueueing the same keys at once', async () => {
    const file = temp.file('enqueue-race.db')
    const entry = compileForProcesses(temp.file('compiled'))
    const script = temp.file('enqueuer.mjs')
    writeFileSync(
      script,
      `import { createRequire } from 'node:module'
const [entry, driver, file, worker] = process.argv.slice(2)
const { createSqliteStore } = await import(entry)
const Database = createRequire(import.meta.url)(driver)
const db = new Database(file, { timeout: 30000 })
const store = createSqliteStore({ db })
await store.migrate()
process.stdout.write('ready\\n')
await new Promise((resolve) => process.stdin.once('data', resolve))
process.stdin.destroy()
const answered = []
for (let round = 0; round < 150; round++) {
  const key = 'key-' + (round % 3)
  if (round % 2 === 0) {
    const event = await store.outbox.findOrCreate({ eventId: worker + '-' + round, subject: 's', payload: '{}', orderingKey: key })
    answered.push([event.eventId, event.keySeq])
  } else {
    const events = await store.transaction(async (tx) => store.outbox.findOrCreateMany([
      { eventId: worker + '-' + round + '-a', subject: 's', payload: '{}', orderingKey: key },
      { eventId: worker + '-' + round + '-u', subject: 's', payload: '{}' },
      { eventId: worker + '-' + round + '-b', subject: 's', payload: '{}', orderingKey: key },
    ], { tx }))
    for (const event of events) answered.push([event.eventId, event.keySeq ?? null])
  }
}
process.stdout.write(JSON.stringify(answered) + '\\n')
db.close()
`,
    )
    const run = (worker: string) => {
      const child = spawn(process.execPath, [script, entry, betterSqlite3Entry(), file, worker], {
        stdio: ['pipe', 'pipe', 'inherit'],
        timeout: 60_000,
      })
      const lines: AsyncIterator<string> = (async function* () {
        let buffered = ''
        for await (const chunk of child.stdout) {
          buffered += String(chunk)
          let newline = buffered.indexOf('\n')
          while (newline >= 0) {
            yield buffered.slice(0, newline)
            buffered = buffered.slice(newline + 1)
            newline = buffered.indexOf('\n')
          }
        }
      })()
      const next = async () => {
        const line = await lines.next()
        if (line.done === true) throw new Error(`enqueuer ${worker} exited early`)
        return line.value
      }
      return { child, next }
    }
    const workers = [run('p'), run('q')]
    for (const worker of workers) expect(await worker.next()).toBe('ready')
    for (const worker of workers) worker.child.stdin.end('go\n')
    const answers = await Promise.all(
      workers.map(async (worker) => JSON.parse(await worker.next()) as [string, number | null][]),
    )
    await Promise.all(
      workers.map((worker) => (worker.child.exitCode === null ? once(worker.child, 'exit') : undefined)),
    )

    const db = new Database(file)
    const rows = db
      .prepare('SELECT seq, event_id, ordering_key, key_seq FROM txbox_outbox ORDER BY seq')
      .all() as { seq: number; event_id: string; ordering_key: string | null; key_seq: number | null }[]
    expect(rows).toHaveLength(2 * (75 + 75 * 3))
    // seq is commit order (one writer), and a keyed event's key_seq is its seq.
    const perKey = new Map<string, number[]>()
    for (const row of rows) {
      if (row.ordering_key === null) {
        expect(row.key_seq).toBeNull()
        continue
      }
      expect(row.key_seq).toBe(row.seq)
      perKey.set(row.ordering_key, [...(perKey.get(row.ordering_key) ?? []), row.key_seq as number])
    }
    expect([...perKey.keys()].sort()).toEqual(['key-0', 'key-1', 'key-2'])
    for (const keySeqs of perKey.values()) {
      expect(keySeqs).toHaveLength(2 * 75)
      expect(keySeqs).toEqual([...new Set(keySeqs)].sort((a, b) => a - b))
    }
    // What each process was answered is what was stored.
    const stored = new Map(rows.map((row) => [row.event_id, row.key_seq]))
    for (const [eventId, keySeq] of answers.flat()) expect(stored.get(eventId)).toBe(keySeq)
    db.close()
  })
})

describe('sqlite ordering keys: claim', () => {
  it('walks the index of heads and unkeyed rows in seq order, probing the failed keyed rows only under block', () => {
    const db = new Database(':memory:')
    const store = createSqliteStore({ db })
    return store.migrate().then(() => {
      const plan = db
        .prepare(`EXPLAIN QUERY PLAN ${outboxSql(tablesFor('txbox_')).claim}`)
        .all('w', 0, 1, 0, 0, 1, 10) as { detail: string }[]
      const details = plan.map((row) => row.detail)
      expect(details).toContain('SCAN candidate USING INDEX txbox_outbox_claimable_heads')
      expect(details).toContain(
        'SEARCH failed USING COVERING INDEX txbox_outbox_key_failed (ordering_key=? AND key_seq<?)',
      )
      db.close()
    })
  })

  it('holds a key behind its failed head with block, lets it go on with skip', async () => {
    const { db, store } = await openStore(':memory:')
    await store.outbox.findOrCreateMany([keyed('k1', 'K'), keyed('k2', 'K'), event('free')])
    const claimed = await store.outbox.claim({ workerId: 'w', limit: 10, ...LEASE })
    expect(claimed.map((e) => e.eventId)).toEqual(['k1', 'free'])
    await store.outbox.markAsFailed('k1', 'poison', { workerId: 'w' })
    expect(await store.outbox.claim({ workerId: 'w', limit: 10, ...LEASE })).toEqual([])
    expect(
      (await store.outbox.claim({ workerId: 'w', limit: 10, ...LEASE, keyedDeadLetters: 'skip' })).map(
        (e) => [e.eventId, e.keySeq],
      ),
    ).toEqual([['k2', 2]])
    db.close()
  })

  it("keeps each key's chain of live events (the claim's heads) through every change of status any method makes", async () => {
    const clock = new ManualClock()
    const { db, store } = await openStore(temp.file('chain.db'), { clock: clock.now })
    /**
     * Each key's live keyed rows form one chain (migrations/0004 and 0005): one head, each
     * other row after a live row of its key that no other row follows, the tail the row that
     * nothing follows; and an event a claim holds (publishing with a claimer) is its key's head,
     * so nothing of its key is claimable beside it. The chain may leave seq order: an event
     * redriven while a later one of its key was publishing goes behind that one.
     */
    const checkChains = (step: string) => {
      const rows = db
        .prepare(
          "SELECT seq, ordering_key AS key, key_prev AS prev, status, claimed_by AS claimer FROM txbox_outbox WHERE ordering_key IS NOT NULL AND status IN ('pending', 'publishing') ORDER BY seq",
        )
        .all() as { seq: number; key: string; prev: number | null; status: string; claimer: string | null }[]
      const byKey = new Map<string, typeof rows>()
      for (const row of rows) byKey.set(row.key, [...(byKey.get(row.key) ?? []), row])
      const tails = new Map(
        (
          db.prepare('SELECT ordering_key AS key, tail_seq AS tail FROM txbox_outbox_keys').all() as {
            key: string
            tail: number | null
          }[]
        ).map(({ key, tail }) => [key, tail]),
      )
      for (const [key, tail] of tails)
        if (!byKey.has(key)) expect({ step, key, tail }).toEqual({ step, key, tail: null })
      for (const [key, live] of byKey) {
        const bySeq = new Map(live.map((row) => [row.seq, row]))
        const followed = new Set(live.map((row) => row.prev))
        expect({ step, key, followedTwice: followed.size < live.length }).toEqual({
          step,
          key,
          followedTwice: false,
        })
        const tail = live.filter((row) => !followed.has(row.seq)).map((row) => row.seq)
        expect({ step, key, tail }).toEqual({ step, key, tail: [tails.get(key)] })
        const order: number[] = []
        for (let seq: number | null | undefined = tails.get(key); seq != null; seq = bySeq.get(seq)?.prev)
          order.unshift(seq)
        expect({ step, key, chain: [...order].sort((a, b) => a - b) }).toEqual({
          step,
          key,
          chain: [...bySeq.keys()],
        })
        for (const row of live)
          if (row.status === 'publishing' && row.claimer !== null)
            expect({ step, key, held: row.seq, head: order[0] }).toEqual({
              step,
              key,
              held: row.seq,
              head: row.seq,
            })
      }
    }
    let random = 7
    const next = (n: number) => {
      random = (random * 1_103_515_245 + 12_345) % 2_147_483_648
      return random % n
    }
    const ids: string[] = []
    /** Methods on an id that cleanup may have deleted meanwhile. */
    const unlessDeleted = async (write: Promise<unknown>) => {
      try {
        await write
      } catch (error) {
        if (!(error instanceof EventNotFoundError)) throw error
      }
    }
    for (let step = 0; step < 400; step++) {
      const id = ids.length === 0 ? undefined : ids[next(ids.length)]
      const action = next(11)
      const name = `${step}: ${action} ${id ?? ''}`
      if (action <= 1 || id === undefined) {
        // A batch over three keys, with an id stored already now and then (its seq is a gap).
        const batch = Array.from({ length: 1 + next(4) }, (_, i) => keyed(`e${step}-${i}`, `K${next(3)}`))
        if (id !== undefined && next(2) === 0) batch.splice(next(batch.length), 0, keyed(id, 'K0'))
        await store.outbox.findOrCreateMany(batch)
        for (const e of batch) if (!ids.includes(e.eventId)) ids.push(e.eventId)
      } else if (action === 2) {
        for (const claimed of await store.outbox.claim({ workerId: 'w', limit: 3, ...LEASE }))
          await store.outbox.markAsSent(claimed.eventId, { workerId: 'w' })
      } else if (action === 3) await unlessDeleted(store.outbox.markAsSent(id))
      else if (action === 4) await unlessDeleted(store.outbox.markAsFailed(id, 'poison'))
      else if (action === 5) await unlessDeleted(store.outbox.requeueFailed([id]))
      else if (action === 6)
        await unlessDeleted(store.outbox.retryLater(id, { errorMessage: 'again', delayMs: 0 }))
      else if (action === 7) await unlessDeleted(store.outbox.markAsPublishing(id))
      else if (action === 8) await store.outbox.markManyAsSent(ids.slice(next(ids.length)).slice(0, 5))
      else if (action === 9) {
        clock.advance(86_400_000)
        await store.outbox.cleanup(1)
        await store.outbox.resetStale(1)
      } else await store.outbox.claim({ workerId: 'v', limit: 2, ...LEASE, keyedDeadLetters: 'skip' })
      checkChains(name)
    }
    // Over 125 events in one call: several statements, one chain.
    await store.outbox.findOrCreateMany(Array.from({ length: 300 }, (_, i) => keyed(`big-${i}`, `K${i % 4}`)))
    checkChains('a batch of 300')
    db.close()
  })

  it('two connections interleaving claims, sends, retries and lease expiries never hold two events of one key, and send each key in order', async () => {
    const clock = new ManualClock()
    const file = temp.file('claim-race.db')
    const connections = [new Database(file), new Database(file)]
    const stores = connections.map((db) => createSqliteStore({ db, clock: clock.now }))
    await Promise.all(stores.map((store) => store.migrate()))
    const KEYS = 12
    const PER_KEY = 15
    for (let round = 0; round < PER_KEY; round++) {
      const store = stores[round % 2] as (typeof stores)[number]
      await store.outbox.findOrCreateMany(
        Array.from({ length: KEYS }, (_, key) => keyed(`k${key}-${round}`, `key-${key}`)),
      )
      await store.outbox.findOrCreate(event(`plain-${round}`))
    }
    const sent = new Map<string, number[]>()
    /** The event each worker believes it holds, per key, with its lease end. */
    const held = new Map<string, { worker: string; eventId: string; leaseUntil: number }>()
    const tried = new Set<string>()
    let step = 0
    for (;;) {
      step++
      const index = step % 2
      const worker = `w${index}`
      const store = stores[index] as (typeof stores)[number]
      const batch = await store.outbox.claim({ workerId: worker, leaseMs: 5_000, limit: 1 + (step % 7) })
      const keysInBatch = new Set<string>()
      for (const claimed of batch) {
        if (claimed.orderingKey === undefined) {
          await store.outbox.markAsSent(claimed.eventId, { workerId: worker })
          continue
        }
        expect(keysInBatch.has(claimed.orderingKey)).toBe(false)
        keysInBatch.add(claimed.orderingKey)
        const holder = held.get(claimed.orderingKey)
        // Another event of this key may be held only if its lease expired: then it must be this one.
        if (holder !== undefined && holder.leaseUntil > clock.peekMs()) throw new Error('key claimed twice')
        if (holder !== undefined) expect(claimed.eventId).toBe(holder.eventId)
        held.set(claimed.orderingKey, {
          worker,
          eventId: claimed.eventId,
          leaseUntil: claimed.leaseUntil?.getTime() ?? 0,
        })
        // The first claim of every third event is abandoned (its lease will expire), of every
        // fifth retried with backoff; the next claim of that event sends it.
        const fate = (step + Number(claimed.keySeq)) % 15
        const firstClaim = !tried.has(claimed.eventId)
        tried.add(claimed.eventId)
        if (firstClaim && fate % 3 === 0) continue
        if (firstClaim && fate % 5 === 0) {
          await store.outbox.retryLater(claimed.eventId, {
            errorMessage: 'flaky',
            delayMs: 2_000,
            workerId: worker,
          })
        } else {
          await store.outbox.markAsSent(claimed.eventId, { workerId: worker })
          sent.set(claimed.orderingKey, [...(sent.get(claimed.orderingKey) ?? []), claimed.keySeq as number])
        }
        held.delete(claimed.orderingKey)
      }
      if (batch.length === 0) {
        const counts = await store.outbox.getCountByStatus()
        if (counts.pending + counts.publishing === 0) break
        clock.advance(2_500)
      }
      expect(step).toBeLessThan(10_000)
    }
    expect(sent.size).toBe(KEYS)
    for (const [key, keySeqs] of sent) {
      const k = key.slice('key-'.length)
      const enqueued = await Promise.all(
        Array.from({ length: PER_KEY }, (_, round) => stores[0]?.outbox.get(`k${k}-${round}`)),
      )
      expect(keySeqs).toEqual(enqueued.map((stored) => stored?.keySeq))
      expect(keySeqs).toEqual([...keySeqs].sort((a, b) => a - b))
    }
    for (const db of connections) db.close()
  })
})
