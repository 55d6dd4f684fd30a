import {
  EventNotFoundError,
  LeaseLostError,
  ManualClock,
  PayloadTooLargeError,
  ValidationError,
} from '@txbox/core'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import { createSqliteStore } from '../src/index.js'
import { assertStorable } from '../src/row-limit.js'
import { outboxSql, tablesFor } from '../src/sql.js'
import { event, LEASE, openStore, tempDirectory } from './helpers.js'

const temp = tempDirectory()
afterAll(() => temp.cleanup())

describe.each([
  ['a file database', () => temp.file(`basic-${Math.random().toString(36).slice(2)}.db`)],
  ['a :memory: database', () => ':memory:'],
])('on %s', (_name, location) => {
  it('runs the outbox life cycle and keeps FIFO with a frozen clock', async () => {
    const clock = new ManualClock()
    const { db, store } = await openStore(location(), { clock: clock.now })
    const ids = Array.from({ length: 10 }, (_, index) => `e-${index}`)
    for (const id of ids) await store.outbox.findOrCreate(event(id))
    expect((await store.outbox.findPending({ limit: 3 })).map((e) => e.eventId)).toEqual(ids.slice(0, 3))
    const claimed = await store.outbox.claim({ limit: 4, workerId: 'w1', ...LEASE })
    expect(claimed.map((e) => e.eventId)).toEqual(ids.slice(0, 4))
    expect(claimed[0]).toMatchObject({ status: 'publishing', claimedBy: 'w1' })
    expect(db.inTransaction).toBe(false)
    await expect(store.outbox.markAsSent('e-0', { workerId: 'w2' })).rejects.toBeInstanceOf(LeaseLostError)
    await store.outbox.markAsSent('e-0', { workerId: 'w1' })
    expect(await store.outbox.markManyAsSent(['e-1', 'missing', 'e-9'], { workerId: 'w1' })).toEqual([
      'missing',
      'e-9',
    ])
    await store.outbox.retryLater('e-2', { errorMessage: 'nats down', delayMs: 1000, workerId: 'w1' })
    await store.outbox.markAsFailed('e-3', 'poison', { workerId: 'w1' })
    expect(await store.outbox.getCountByStatus()).toEqual({ pending: 7, publishing: 0, sent: 2, failed: 1 })
    await expect(store.outbox.markAsSent('nope')).rejects.toBeInstanceOf(EventNotFoundError)
    await expect(store.outbox.requeueFailed(['e-3', 'e-4', 'nope'])).rejects.toBeInstanceOf(
      EventNotFoundError,
    )
    expect(await store.outbox.get('e-3')).toMatchObject({
      status: 'pending',
      retryCount: 0,
      errorMessage: 'poison',
    })
    db.close()
  })

  it('runs the inbox claim and dedupes by event id alone', async () => {
    const clock = new ManualClock()
    const { db, store } = await openStore(location(), { clock: clock.now })
    const params = { ...event('in-1'), stream: 'ORDERS', streamSeq: 7 }
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, index) =>
        store.inbox.claim(params, { workerId: `w${index}`, ...LEASE }),
      ),
    )
    expect(results.filter((result) => result.shouldProcess)).toHaveLength(1)
    expect((await store.inbox.get('in-1'))?.deliveries).toBe(20)
    // A re-created stream restarts at sequence 1: the same position under a new id is new.
    const reused = await store.inbox.findOrCreate({ ...params, eventId: 'in-1-after-recreate' })
    expect(reused).toMatchObject({ eventId: 'in-1-after-recreate', deliveries: 1, streamSeq: 7 })
    expect((await store.inbox.get('in-1'))?.deliveries).toBe(20)
    await store.inbox.markAsProcessed('in-1-after-recreate')
    clock.advance(LEASE.leaseMs)
    expect((await store.inbox.claim(params, { workerId: 'late', ...LEASE })).shouldProcess).toBe(true)
    await store.inbox.markAsProcessed('in-1')
    expect(await store.inbox.isProcessed('in-1')).toBe(true)
    expect(await store.inbox.getCountByStatus()).toEqual({ processing: 0, processed: 2, failed: 0 })
    db.close()
  })
})

describe('ids stored before creation refused what NATS alters', () => {
  it('are still reached by every lookup, so an operator can inspect and redrive them', async () => {
    const { db, store } = await openStore(':memory:')
    // Rows an earlier version accepted: a trailing space, a line break.
    const insert = db.prepare(
      `INSERT INTO txbox_outbox (event_id, subject, payload, status, enqueued_at, available_at, retry_count, error_message)
       VALUES (?, 'orders.created', 'p', 'failed', 0, 0, 1, 'dead-lettered')`,
    )
    for (const legacy of ['o-1 ', 'a\nb']) insert.run(legacy)
    await expect(store.outbox.findOrCreate(event('o-1 '))).rejects.toBeInstanceOf(ValidationError)
    expect((await store.outbox.get('o-1 '))?.status).toBe('failed')
    expect((await store.outbox.getFailedEvents()).map((failed) => failed.eventId)).toEqual(['o-1 ', 'a\nb'])
    expect(await store.outbox.requeueFailed(['o-1 ', 'a\nb'])).toBe(2)
    const claimed = await store.outbox.claim({ limit: 10, ...LEASE, workerId: 'w' })
    expect(claimed.map((claimedEvent) => claimedEvent.eventId)).toEqual(['o-1 ', 'a\nb'])
    await store.outbox.markAsSent('o-1 ', { workerId: 'w' })
    expect(await store.outbox.markManyAsSent(['a\nb'], { workerId: 'w' })).toEqual([])
    expect((await store.outbox.getCountByStatus()).sent).toBe(2)
    db.close()
  })
})

describe('payload fidelity', () => {
  it('stores U+0000, U+0001, emoji, astral characters and 1 MiB unchanged, with no escaping in the column', async () => {
    // Payload and headers add up to more than the default 1 MiB of a NATS message.
    const { db, store } = await openStore(':memory:', { maxEventBytes: 2 * 1024 * 1024 })
    const tricky = 'nul\u0000soh\u0001 "quotes" \\backslash\\ 😀 \u{10FFFF} \u{1D11E} é'
    const big = 'x'.repeat(1024 * 1024 - tricky.length) + tricky
    // The id has no control characters: it travels as a NATS header, which cannot carry them.
    const stored = await store.outbox.findOrCreate(event('nul-id', { payload: big, headers: tricky }))
    expect(stored.payload).toBe(big)
    const raw = db.prepare('SELECT payload, headers, event_id FROM txbox_outbox').get() as {
      payload: string
      headers: string
      event_id: string
    }
    expect(raw).toEqual({ payload: big, headers: tricky, event_id: 'nul-id' })
    expect((await store.outbox.get('nul-id'))?.payload).toBe(big)
    // A lookup still takes an id stored before creation refused control characters.
    expect(await store.outbox.get('nul\u0000')).toBeNull()
    const inbox = await store.inbox.findOrCreate({ ...event('in'), payload: big, headers: tricky })
    expect(inbox).toMatchObject({ payload: big, headers: tricky })
    db.close()
  })

  it('reads numbers even on a connection that defaults to BigInt', async () => {
    const { db, store } = await openStore(':memory:')
    db.defaultSafeIntegers(true)
    const stored = await store.outbox.findOrCreate(event('big'))
    expect(typeof stored.retryCount).toBe('number')
    expect(await store.outbox.getCountByStatus()).toEqual({ pending: 1, publishing: 0, sent: 0, failed: 0 })
    db.close()
  })
})

describe('prefixes', () => {
  it('keeps stores with different prefixes apart in one database', async () => {
    const db = new Database(':memory:')
    const one = createSqliteStore({ db, tablePrefix: 'one_' })
    const two = createSqliteStore({ db, tablePrefix: 'two_' })
    await one.migrate()
    await two.migrate()
    await one.outbox.findOrCreate(event('only-in-one'))
    expect(await two.outbox.get('only-in-one')).toBeNull()
    expect((await two.outbox.claim({ workerId: 'w', ...LEASE })).length).toBe(0)
    db.close()
  })

  it('rejects a table prefix that is not an identifier', () => {
    const db = new Database(':memory:')
    expect(() => createSqliteStore({ db, tablePrefix: 'x; DROP TABLE y; --' })).toThrow(ValidationError)
    expect(() => createSqliteStore({ db: {} as Database.Database })).toThrow(ValidationError)
    db.close()
    expect(() => createSqliteStore({ db })).toThrow(/db is closed/)
  })
})

describe('transactions', () => {
  it('commits with the caller: manual BEGIN, await findOrCreate({ tx: db }), COMMIT', async () => {
    const { db, store } = await openStore(':memory:')
    db.exec('BEGIN')
    await store.outbox.findOrCreate(event('committed'), { tx: db })
    await store.outbox.findOrCreateMany([event('many-1'), event('many-2'), event('many-1')], { tx: db })
    await store.inbox.findOrCreate(event('in'))
    await store.inbox.markAsProcessed('in', { tx: db })
    db.exec('COMMIT')
    expect((await store.outbox.findPending()).map((e) => e.eventId)).toEqual([
      'committed',
      'many-1',
      'many-2',
    ])
    expect(await store.inbox.isProcessed('in')).toBe(true)
    db.close()
  })

  it('rolls back with the caller and leaves no trace', async () => {
    const { db, store } = await openStore(':memory:')
    await store.inbox.findOrCreate(event('in'))
    db.exec('BEGIN IMMEDIATE')
    await store.outbox.findOrCreate(event('gone'), { tx: db })
    await store.outbox.findOrCreateMany([event('gone-1'), event('gone-2')], { tx: db })
    await store.inbox.markAsProcessed('in', { tx: db })
    db.exec('ROLLBACK')
    expect(db.prepare('SELECT COUNT(*) FROM txbox_outbox').pluck().get()).toBe(0)
    expect(await store.inbox.get('in')).toMatchObject({ status: 'processing' })
    db.close()
  })

  it('joins an open transaction without tx through a savepoint, instead of failing on a nested BEGIN', async () => {
    const { db, store } = await openStore(':memory:')
    db.exec('BEGIN')
    await store.outbox.findOrCreateMany([event('a'), event('b')])
    await store.inbox.claim(event('in'), { workerId: 'w', ...LEASE })
    expect(db.inTransaction).toBe(true)
    db.exec('ROLLBACK')
    expect(await store.outbox.getCountByStatus()).toEqual({ pending: 0, publishing: 0, sent: 0, failed: 0 })
    db.close()
  })

  it('refuses a tx that is another connection, before writing', async () => {
    const file = temp.file('other-connection.db')
    const { db, store } = await openStore(file)
    const other = new Database(file)
    other.exec('BEGIN')
    await expect(store.outbox.findOrCreate(event('x'), { tx: other })).rejects.toBeInstanceOf(ValidationError)
    await expect(store.outbox.findOrCreateMany([event('x')], { tx: other })).rejects.toBeInstanceOf(
      ValidationError,
    )
    await store.inbox.findOrCreate(event('in'))
    await expect(store.inbox.markAsProcessed('in', { tx: other })).rejects.toBeInstanceOf(ValidationError)
    other.exec('ROLLBACK')
    expect(await store.outbox.get('x')).toBeNull()
    expect(await store.inbox.isProcessed('in')).toBe(false)
    other.close()
    db.close()
  })

  it('refuses to claim inside an open transaction, which could publish an event that is then rolled back', async () => {
    const { db, store } = await openStore(':memory:')
    db.exec('BEGIN')
    await store.outbox.findOrCreate(event('uncommitted'), { tx: db })
    await expect(store.outbox.claim({ workerId: 'w', ...LEASE })).rejects.toBeInstanceOf(ValidationError)
    db.exec('ROLLBACK')
    expect(await store.outbox.claim({ workerId: 'w', ...LEASE })).toEqual([])
    db.close()
  })
})

describe('errors and limits', () => {
  it('raises PayloadTooLargeError for an event over the SQLite length limit, counting UTF-8 bytes', () => {
    // Shown with a small limit: a real 1 GB string would not fit the test machine. The row
    // keeps 1024 bytes for the other columns; the payload's UTF-8 bytes count, not its length.
    const fits = { eventId: 'e', subject: 's', payload: '€'.repeat(4) }
    expect(() => assertStorable(fits, 1024 + 14)).not.toThrow()
    expect(() => assertStorable({ ...fits, headers: 'h' }, 1024 + 14)).toThrow(PayloadTooLargeError)
    expect(() => assertStorable({ ...fits, payload: 'x'.repeat(12) }, 1024 + 14)).not.toThrow()
  })

  it('validates before any I/O', async () => {
    const { db, store } = await openStore(':memory:')
    await expect(store.outbox.findOrCreate({ ...event('x'), subject: 'has space' })).rejects.toBeInstanceOf(
      ValidationError,
    )
    await expect(store.outbox.claim({ workerId: '', ...LEASE })).rejects.toBeInstanceOf(ValidationError)
    expect(db.prepare('SELECT COUNT(*) FROM txbox_outbox').pluck().get()).toBe(0)
    db.close()
  })

  it('cleans up in batches of 1000 and only old sent events', async () => {
    const clock = new ManualClock()
    const { db, store } = await openStore(':memory:', { clock: clock.now })
    const ids = Array.from({ length: 2500 }, (_, index) => `old-${index}`)
    await store.outbox.findOrCreateMany(ids.map((id) => event(id)))
    await store.outbox.findOrCreate(event('still-pending'))
    expect(await store.outbox.markManyAsSent(ids)).toEqual([])
    clock.advance(2 * 86_400_000)
    expect(await store.outbox.cleanup(1)).toBe(2500)
    expect(await store.outbox.getCountByStatus()).toEqual({ pending: 1, publishing: 0, sent: 0, failed: 0 })
    db.close()
  })

  it('claims through the partial claimable index, in seq order without a sort', async () => {
    const { db, store } = await openStore(':memory:')
    await store.outbox.findOrCreate(event('x'))
    const claim = outboxSql(tablesFor('txbox_')).claim
    const parameters = Array.from({ length: claim.split('?').length - 1 }, () => 0)
    const plan = db.prepare(`EXPLAIN QUERY PLAN ${claim}`).all(...parameters) as { detail: string }[]
    const details = plan.map((step) => step.detail).join('\n')
    expect(details).toContain('USING INDEX txbox_outbox_claimable')
    expect(details).not.toContain('TEMP B-TREE')
    db.close()
  })

  it('looks up the ids of a fenced list by event_id, not every publishing row by status', async () => {
    const { db } = await openStore(':memory:')
    const sql = outboxSql(tablesFor('txbox_'))
    for (const statement of [sql.markManyAsSentFenced, sql.renewLeases, sql.release]) {
      const parameters = Array.from({ length: statement.split('?').length - 1 }, () => '[]')
      const plan = db.prepare(`EXPLAIN QUERY PLAN ${statement}`).all(...parameters) as { detail: string }[]
      const details = plan.map((step) => step.detail).join('\n')
      expect(details).toContain('USING INDEX sqlite_autoindex_txbox_outbox_1 (event_id=?)')
      expect(details).not.toContain('txbox_outbox_status')
    }
    db.close()
  })

  it('answers a claim with the events as stored after it, every optional field included', async () => {
    const clock = new ManualClock(new Date('2026-12-02T10:00:00.000Z'))
    const { db, store } = await openStore(':memory:', { clock: clock.now })
    await store.outbox.findOrCreateMany([
      event('with-headers', { headers: '{"trace":"t1"}' }),
      { ...event('keyed'), orderingKey: 'K' },
      event('plain'),
      event('retried'),
    ])
    // Sent, then retried without a fence: pending again, with its sentAt, error and retry count.
    await store.outbox.markAsSent('retried')
    clock.advance(1_000)
    await store.outbox.retryLater('retried', { errorMessage: 'broker down', delayMs: 0 })
    clock.advance(1_000)
    const claimed = await store.outbox.claim({ workerId: 'w', limit: 10, ...LEASE })
    expect(claimed.map((e) => e.eventId)).toEqual(['with-headers', 'keyed', 'plain', 'retried'])
    for (const e of claimed) expect(e).toStrictEqual(await store.outbox.get(e.eventId))
    expect(claimed[3]).toMatchObject({ retryCount: 1, errorMessage: 'broker down', status: 'publishing' })
    expect(claimed[3]?.sentAt).toEqual(new Date('2026-12-02T10:00:00.000Z'))
    expect(claimed[1]?.orderingKey).toBe('K')
    expect(claimed[1] && 'headers' in claimed[1]).toBe(false)
    expect(claimed[0]).toMatchObject({ headers: '{"trace":"t1"}', claimedBy: 'w' })
    expect(claimed[0]?.leaseUntil).toEqual(new Date(clock.peekMs() + LEASE.leaseMs))
    // A second object per event: changing one answer changes nothing else.
    expect(claimed[0]?.claimedAt).not.toBe(claimed[1]?.claimedAt)
    db.close()
  })
})
