import { ManualClock } from '@txbox/core'
import Database from 'better-sqlite3'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { SIZED_STATEMENTS } from '../src/sized-statements.js'
import { MAX_INSERT_ROWS } from '../src/sql.js'
import { event, LEASE, openStore } from './helpers.js'

/**
 * The statements each hot call runs, read off better-sqlite3 itself: every Statement run,
 * get and all (BEGIN IMMEDIATE, COMMIT and SAVEPOINT included: better-sqlite3's transaction
 * functions run prepared statements too). A store that went back to a statement per event,
 * or wrapped a lone statement in BEGIN IMMEDIATE, fails here before a benchmark shows it.
 */
type Hook = (source: string) => void
const ran: string[] = []
let beforeRun: Hook | undefined
const statementProto = Object.getPrototypeOf(new Database(':memory:').prepare('SELECT 1')) as Record<
  string,
  (...args: unknown[]) => unknown
>
const originals = new Map<string, (...args: unknown[]) => unknown>()

beforeAll(() => {
  for (const method of ['run', 'get', 'all']) {
    const original = statementProto[method] as (...args: unknown[]) => unknown
    originals.set(method, original)
    statementProto[method] = function (this: { source: string }, ...args: unknown[]) {
      beforeRun?.(this.source)
      ran.push(this.source)
      return original.apply(this, args)
    }
  }
})
afterAll(() => {
  for (const [method, original] of originals) statementProto[method] = original
})
afterEach(() => {
  beforeRun = undefined
})

/** What `call` ran, each statement named by its first words. */
const statementsOf = async (call: () => Promise<unknown>): Promise<string[]> => {
  ran.length = 0
  await call()
  return ran.map((source) => {
    const words = source.trim().split(/\s+/)
    return words[0] === 'BEGIN' || words[0] === 'INSERT' ? words.slice(0, 2).join(' ') : (words[0] as string)
  })
}

const ids = (prefix: string, count: number): string[] =>
  Array.from({ length: count }, (_, index) => `${prefix}-${String(index).padStart(4, '0')}`)

describe('statements per call', () => {
  it('enqueues a batch of new events in one INSERT, their seqs in input order', async () => {
    const { db, store } = await openStore(':memory:')
    const batch = ids('new', 100)
    expect(await statementsOf(() => store.outbox.findOrCreateMany(batch.map((id) => event(id))))).toEqual([
      'INSERT INTO',
    ])
    expect(await statementsOf(() => store.outbox.findOrCreate(event('one')))).toEqual(['INSERT INTO'])
    expect((await store.outbox.findPending({ limit: 200 })).map((e) => e.eventId)).toEqual([...batch, 'one'])
    db.close()
  })

  it('enqueues keyed events in one INSERT, each keySeq its seq, as an unkeyed batch', async () => {
    const { db, store } = await openStore(':memory:')
    const keyed = (id: string, orderingKey: string) => ({ ...event(id), orderingKey })
    let results: Awaited<ReturnType<typeof store.outbox.findOrCreateMany>> = []
    expect(
      await statementsOf(async () => {
        results = await store.outbox.findOrCreateMany([
          keyed('k1', 'order-1'),
          event('plain'),
          keyed('k2', 'order-2'),
          keyed('k3', 'order-1'),
        ])
      }),
    ).toEqual(['INSERT INTO'])
    expect(results.map((e) => [e.eventId, e.orderingKey, e.keySeq])).toEqual([
      ['k1', 'order-1', 1],
      ['plain', undefined, undefined],
      ['k2', 'order-2', 3],
      ['k3', 'order-1', 4],
    ])
    for (const answered of results) expect(await store.outbox.get(answered.eventId)).toEqual(answered)
    expect(await statementsOf(() => store.outbox.findOrCreate(event('plain-2')))).toEqual(['INSERT INTO'])
    expect(await statementsOf(() => store.outbox.claim({ workerId: 'w', limit: 10, ...LEASE }))).toEqual([
      'UPDATE',
    ])
    db.close()
  })

  it('reads back, under BEGIN IMMEDIATE, only the ids that were stored already: first write wins', async () => {
    const clock = new ManualClock()
    const { db, store } = await openStore(':memory:', { clock: clock.now })
    await store.outbox.findOrCreateMany([event('b', { payload: 'old' }), event('d', { payload: 'old' })])
    clock.advance(1000)
    const batch = ['a', 'b', 'c', 'd', 'e'].map((id) => event(id, { payload: 'new' }))
    let results: Awaited<ReturnType<typeof store.outbox.findOrCreateMany>> = []
    expect(
      await statementsOf(async () => {
        results = await store.outbox.findOrCreateMany(batch)
      }),
    ).toEqual(['INSERT INTO', 'BEGIN IMMEDIATE', 'SELECT', 'COMMIT'])
    expect(results.map((e) => [e.eventId, e.payload, e.enqueuedAt.getTime() - clock.peekMs()])).toEqual([
      ['a', 'new', 0],
      ['b', 'old', -1000],
      ['c', 'new', 0],
      ['d', 'old', -1000],
      ['e', 'new', 0],
    ])
    expect((await store.outbox.findPending()).map((e) => e.eventId)).toEqual(['b', 'd', 'a', 'c', 'e'])
    db.close()
  })

  it('inserts again an event that cleanup deleted between the INSERT that skipped it and the read-back', async () => {
    const { db, store } = await openStore(':memory:')
    await store.outbox.findOrCreate(event('gone', { payload: 'old' }))
    // What another process's cleanup could do between the two steps, done here at the read-back.
    beforeRun = (source) => {
      if (source.startsWith('SELECT') && source.includes('json_each')) {
        beforeRun = undefined
        db.prepare("DELETE FROM txbox_outbox WHERE event_id = 'gone'").run()
      }
    }
    const [stored] = await store.outbox.findOrCreateMany([event('gone', { payload: 'new' }), event('x')])
    expect(stored?.payload).toBe('new')
    expect(await store.outbox.get('gone')).toEqual(stored)
    db.close()
  })

  it(`splits a batch over ${MAX_INSERT_ROWS} rows into INSERTs under one BEGIN IMMEDIATE, FIFO across them`, async () => {
    const { db, store } = await openStore(':memory:')
    const batch = ids('big', 2 * MAX_INSERT_ROWS + 3)
    await store.outbox.findOrCreate(event(batch[MAX_INSERT_ROWS + 1] as string, { payload: 'old' }))
    let results: Awaited<ReturnType<typeof store.outbox.findOrCreateMany>> = []
    expect(
      await statementsOf(async () => {
        results = await store.outbox.findOrCreateMany(batch.map((id) => event(id)))
      }),
    ).toEqual(['BEGIN IMMEDIATE', 'INSERT INTO', 'INSERT INTO', 'INSERT INTO', 'SELECT', 'COMMIT'])
    expect(results.map((e) => e.eventId)).toEqual(batch)
    expect(results[MAX_INSERT_ROWS + 1]?.payload).toBe('old')
    const claimed = await store.outbox.claim({ workerId: 'w', limit: 10_000, ...LEASE })
    const stored = batch[MAX_INSERT_ROWS + 1] as string
    expect(claimed.map((e) => e.eventId)).toEqual([stored, ...batch.filter((id) => id !== stored)])
    db.close()
  })

  it('keeps inserting correctly when batch sizes cycle through more shapes than it keeps prepared', async () => {
    const { db, store } = await openStore(':memory:')
    const expected: string[] = []
    for (let round = 0; round < 2; round++) {
      for (let size = 1; size <= SIZED_STATEMENTS + 4; size++) {
        const batch = ids(`r${round}-s${size}`, size)
        expected.push(...batch)
        expect(
          (await store.outbox.findOrCreateMany(batch.map((id) => event(id)))).map((e) => e.eventId),
        ).toEqual(batch)
      }
    }
    expect((await store.outbox.findPending({ limit: 10_000 })).map((e) => e.eventId)).toEqual(expected)
    db.close()
  })

  it('claims in one statement and marks a batch sent in one statement, answering the ids not applied', async () => {
    const { db, store } = await openStore(':memory:')
    await store.outbox.findOrCreateMany(ids('e', 100).map((id) => event(id)))
    let claimed: string[] = []
    expect(
      await statementsOf(async () => {
        claimed = (await store.outbox.claim({ workerId: 'w', limit: 100, ...LEASE })).map((e) => e.eventId)
      }),
    ).toEqual(['UPDATE'])
    // Taken over by another worker after its lease expired: a mark by 'w' is lost for it.
    db.prepare("UPDATE txbox_outbox SET claimed_by = 'other' WHERE event_id = 'e-0007'").run()
    let notApplied: string[] = []
    expect(
      await statementsOf(async () => {
        notApplied = await store.outbox.markManyAsSent([...claimed, 'missing', 'e-0000'], { workerId: 'w' })
      }),
    ).toEqual(['UPDATE'])
    expect(notApplied).toEqual(['e-0007', 'missing', 'e-0000'])
    expect(await store.outbox.getCountByStatus()).toEqual({ pending: 0, publishing: 1, sent: 99, failed: 0 })
    expect(await store.outbox.get('e-0001')).not.toHaveProperty('claimedBy')
    db.close()
  })

  it('renews the leases of a batch in one statement, only those the worker holds', async () => {
    const clock = new ManualClock()
    const { db, store } = await openStore(':memory:', { clock: clock.now })
    await store.outbox.findOrCreateMany(ids('e', 3).map((id) => event(id)))
    await store.outbox.claim({ workerId: 'w', limit: 2, ...LEASE })
    clock.advance(1000)
    let renewed: string[] = []
    expect(
      await statementsOf(async () => {
        renewed = await store.outbox.renewLease(['e-0001', 'e-0002', 'e-0000'], {
          workerId: 'w',
          leaseMs: 60_000,
        })
      }),
    ).toEqual(['UPDATE'])
    expect(renewed).toEqual(['e-0001', 'e-0000'])
    expect((await store.outbox.get('e-0000'))?.leaseUntil?.getTime()).toBe(clock.peekMs() + 60_000)
    db.close()
  })

  it('claims a first inbox delivery in one INSERT; a redelivery is decided under BEGIN IMMEDIATE', async () => {
    const { db, store } = await openStore(':memory:')
    const lease = { workerId: 'w', ...LEASE }
    expect(await statementsOf(() => store.inbox.claim(event('in'), lease))).toEqual(['INSERT INTO'])
    let again: Awaited<ReturnType<typeof store.inbox.claim>> | undefined
    expect(
      await statementsOf(async () => {
        again = await store.inbox.claim(event('in'), lease)
      }),
    ).toEqual(['INSERT INTO', 'BEGIN IMMEDIATE', 'SELECT', 'UPDATE', 'COMMIT'])
    expect(again).toMatchObject({ shouldProcess: false, event: { deliveries: 2 } })
    expect(await statementsOf(() => store.inbox.findOrCreate(event('in-2')))).toEqual(['INSERT INTO'])
    expect(await store.inbox.findOrCreate(event('in-2'))).toMatchObject({
      deliveries: 2,
      status: 'processing',
    })
    db.close()
  })

  it('inserts an inbox delivery that cleanup deleted between the INSERT that skipped it and the lookup', async () => {
    const { db, store } = await openStore(':memory:')
    await store.inbox.claim(event('in'), { workerId: 'first', ...LEASE })
    beforeRun = (source) => {
      if (source.startsWith('SELECT') && source.includes('txbox_inbox')) {
        beforeRun = undefined
        db.prepare("DELETE FROM txbox_inbox WHERE event_id = 'in'").run()
      }
    }
    const result = await store.inbox.claim(event('in'), { workerId: 'second', ...LEASE })
    expect(result).toMatchObject({ shouldProcess: true, event: { deliveries: 1, claimedBy: 'second' } })
    expect(await store.inbox.get('in')).toEqual(result.event)
    db.close()
  })
})
