import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { ManualClock, type OutboxEvent } from '@txbox/core'
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
  it('counts per key, case-sensitively, in input order, and goes on after cleanup deleted every event of the key', async () => {
    const clock = new ManualClock()
    const { db, store } = await openStore(':memory:', { clock: clock.now })
    expect(
      seqs(await store.outbox.findOrCreateMany([keyed('a1', 'A'), keyed('x1', 'a'), keyed('a2', 'A')])),
    ).toEqual([
      ['a1', 1],
      ['x1', 1],
      ['a2', 2],
    ])
    expect((await store.outbox.findOrCreate(keyed('a3', 'A'))).keySeq).toBe(3)
    for (const id of ['a1', 'a2', 'a3']) await store.outbox.markAsSent(id)
    clock.advance(3 * 86_400_000)
    expect(await store.outbox.cleanup(1)).toBe(3)
    expect(db.prepare("SELECT COUNT(*) FROM txbox_outbox WHERE ordering_key = 'A'").pluck().get()).toBe(0)
    expect((await store.outbox.findOrCreate(keyed('a4', 'A'))).keySeq).toBe(4)
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
    // The duplicate's reservation is a gap (allowed); the next event is still after it.
    expect(next?.keySeq).toBeGreaterThan(first.keySeq ?? Number.POSITIVE_INFINITY)
    expect(await store.outbox.get('after')).toEqual(next)
    db.close()
  })

  it('rolls the reservation back with the caller transaction, and stores keys of any length and script exactly', async () => {
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
      keySeq: 1,
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
      .prepare('SELECT event_id, ordering_key, key_seq FROM txbox_outbox ORDER BY seq')
      .all() as { event_id: string; ordering_key: string | null; key_seq: number | null }[]
    expect(rows).toHaveLength(2 * (75 + 75 * 3))
    // seq is commit order (one writer): per key, key_seq rises strictly along it, with no gap here.
    const perKey = new Map<string, number[]>()
    for (const row of rows) {
      if (row.ordering_key === null) {
        expect(row.key_seq).toBeNull()
        continue
      }
      perKey.set(row.ordering_key, [...(perKey.get(row.ordering_key) ?? []), row.key_seq as number])
    }
    expect([...perKey.keys()].sort()).toEqual(['key-0', 'key-1', 'key-2'])
    for (const keySeqs of perKey.values())
      expect(keySeqs).toEqual(Array.from({ length: keySeqs.length }, (_, index) => index + 1))
    // What each process was answered is what was stored.
    const stored = new Map(rows.map((row) => [row.event_id, row.key_seq]))
    for (const [eventId, keySeq] of answers.flat()) expect(stored.get(eventId)).toBe(keySeq)
    db.close()
  })
})

describe('sqlite ordering keys: claim', () => {
  it('probes the head index for a keyed candidate and walks the claimable index in seq order', () => {
    const db = new Database(':memory:')
    const store = createSqliteStore({ db })
    return store.migrate().then(() => {
      const plan = db
        .prepare(`EXPLAIN QUERY PLAN ${outboxSql(tablesFor('txbox_')).claim}`)
        .all('w', 0, 1, 0, 0, 1, 10) as { detail: string }[]
      const details = plan.map((row) => row.detail)
      expect(details).toContain('SCAN candidate USING INDEX txbox_outbox_claimable')
      expect(details).toContain(
        'SEARCH earlier USING INDEX txbox_outbox_key_holds (ordering_key=? AND key_seq<?)',
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
    for (const keySeqs of sent.values())
      expect(keySeqs).toEqual(Array.from({ length: PER_KEY }, (_, index) => index + 1))
    for (const db of connections) db.close()
  })
})
