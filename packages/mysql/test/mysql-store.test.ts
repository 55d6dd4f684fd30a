import {
  EventNotFoundError,
  LeaseLostError,
  ManualClock,
  natsMessageBytes,
  PayloadTooLargeError,
  StorageError,
  ValidationError,
} from '@txbox/core'
import type { Pool, RowDataPacket } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMySqlStore, type MySqlStore } from '../src/index.js'
import { freshStore, makePool, SKIP, SKIP_REASON } from './helpers.js'

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0, 123)

describe.skipIf(SKIP)(`mysql store against a real server${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  let pool: Pool
  let store: MySqlStore
  let drop: () => Promise<void>
  const clock = new ManualClock(T0)

  beforeAll(async () => {
    pool = makePool()
    ;({ store, drop } = await freshStore(pool, { clock: clock.now }))
  })

  afterAll(async () => {
    await drop?.()
    await pool?.end()
  })

  const raw = async (sql: string, values: unknown[] = []): Promise<RowDataPacket[]> => {
    const [rows] = await pool.query<RowDataPacket[]>(sql, values)
    return rows
  }

  it('round-trips emoji, astral characters, quotes, backslashes, U+0000 and a 1 MB payload', async () => {
    const tricky = `{"a":"😀 𝄞 \\u0000 \\\\ ' \\" \u0000 \u0001 end"}`
    // 1,000,000 UTF-8 bytes: with its headers, within the default maxEventBytes (1 MiB).
    const big = 'x😀'.repeat(200_000)
    const created = await store.outbox.findOrCreateMany([
      { eventId: 'fidelity-1', subject: 's', payload: tricky, headers: '{"h":"\u0000"}' },
      { eventId: 'fidelity-2', subject: 's', payload: big },
    ])
    expect(created.map((event) => event.payload)).toEqual([tricky, big])
    expect((await store.outbox.get('fidelity-1'))?.payload).toBe(tricky)
    expect((await store.outbox.get('fidelity-1'))?.headers).toBe('{"h":"\u0000"}')
    expect((await store.outbox.get('fidelity-2'))?.payload).toBe(big)
    const [row] = await raw(`SELECT payload FROM \`${store.tablePrefix}outbox\` WHERE event_id = ?`, [
      'fidelity-1',
    ])
    expect(row?.payload).toBe(tricky)
  })

  it('keeps ids case-sensitive and byte-exact (no PAD SPACE collisions)', async () => {
    const ids = ['Case', 'case', 'cafe\u0301', 'café']
    for (const eventId of ids) await store.outbox.findOrCreate({ eventId, subject: 's', payload: eventId })
    for (const eventId of ids) expect((await store.outbox.get(eventId))?.payload).toBe(eventId)
    // Creation refuses edge whitespace now, but lookups take any id: under a PAD SPACE
    // collation `case ` would find (and markAsSent would change) the row of `case`.
    expect(await store.outbox.get('case ')).toBeNull()
    await expect(store.outbox.markAsSent('case ')).rejects.toBeInstanceOf(EventNotFoundError)
    await store.inbox.findOrCreate({ eventId: 'in', subject: 's', payload: '2' })
    expect(await store.inbox.get('in ')).toBeNull()
  })

  it('stores UTC whatever the session time zone and the pool timezone option are', async () => {
    // Pool options that would change what the driver returns, if the adapter relied on them.
    const skewed = makePool({
      timezone: '+05:00',
      connectionLimit: 2,
      rowsAsArray: true,
      typeCast: () => 'hijacked',
    })
    skewed.on('connection', (connection) => {
      connection.query("SET time_zone = '+05:00'")
    })
    try {
      const [[zone]] = await skewed.query<RowDataPacket[]>({
        sql: 'SELECT @@session.time_zone AS tz',
        rowsAsArray: false,
        typeCast: (_field, next) => next(),
      })
      expect(zone?.tz).toBe('+05:00')
      const local = createMySqlStore({ pool: skewed, tablePrefix: store.tablePrefix, clock: clock.now })
      await local.migrate()
      const availableAt = new Date(Date.UTC(2026, 5, 30, 23, 59, 59, 999))
      const event = await local.outbox.findOrCreate({
        eventId: 'tz-1',
        subject: 's',
        payload: 'p',
        availableAt,
      })
      expect(event.enqueuedAt.getTime()).toBe(clock.peekMs())
      expect(event.availableAt.getTime()).toBe(availableAt.getTime())
      expect(event.payload).toBe('p')
      expect(await local.outbox.claim({ limit: 1, leaseMs: 5, workerId: 'w' })).toHaveLength(1)
      const [row] = await raw(
        `SELECT CAST(enqueued_at AS CHAR) AS e, CAST(available_at AS CHAR) AS a FROM \`${store.tablePrefix}outbox\` WHERE event_id = ?`,
        ['tz-1'],
      )
      expect(row).toEqual({ e: '2026-01-01 12:00:00.123', a: '2026-06-30 23:59:59.999' })
      expect((await store.outbox.get('tz-1'))?.availableAt.toISOString()).toBe('2026-06-30T23:59:59.999Z')
    } finally {
      await skewed.end()
    }
  })

  it('claims in enqueue order, fences, and reports unknown ids', async () => {
    const { store: s, drop: d } = await freshStore(pool, { clock: clock.now })
    try {
      await s.outbox.findOrCreateMany(
        ['a', 'b', 'c'].map((eventId) => ({ eventId, subject: 's', payload: eventId })),
      )
      const first = await s.outbox.claim({ limit: 2, leaseMs: 1000, workerId: 'w1' })
      expect(first.map((event) => event.eventId)).toEqual(['a', 'b'])
      expect(first[0]).toMatchObject({ status: 'publishing', claimedBy: 'w1' })
      expect(first[0]?.leaseUntil?.getTime()).toBe(clock.peekMs() + 1000)
      expect(
        (await s.outbox.claim({ limit: 5, leaseMs: 1000, workerId: 'w2' })).map((e) => e.eventId),
      ).toEqual(['c'])
      await expect(s.outbox.markAsSent('a', { workerId: 'w2' })).rejects.toBeInstanceOf(LeaseLostError)
      await expect(s.outbox.markAsSent('nope')).rejects.toBeInstanceOf(EventNotFoundError)
      clock.advance(1000)
      const reclaimed = await s.outbox.claim({ limit: 5, leaseMs: 1000, workerId: 'w3' })
      expect(reclaimed.map((event) => event.eventId)).toEqual(['a', 'b', 'c'])
      expect(await s.outbox.markManyAsSent(['a', 'zzz', 'b', 'a'], { workerId: 'w3' })).toEqual(['zzz', 'a'])
      expect(await s.outbox.renewLease(['c', 'a'], { workerId: 'w3', leaseMs: 5 })).toEqual(['c'])
      await s.outbox.retryLater('c', { errorMessage: 'boom', delayMs: 10, workerId: 'w3' })
      expect(await s.outbox.findPending()).toEqual([])
      clock.advance(10)
      expect((await s.outbox.findPending()).map((e) => e.eventId)).toEqual(['c'])
      await s.outbox.markAsFailed('c', 'dead')
      expect(await s.outbox.requeueFailed(['c', 'a'])).toBe(1)
      await expect(s.outbox.requeueFailed(['missing'])).rejects.toBeInstanceOf(EventNotFoundError)
      expect(await s.outbox.getCountByStatus()).toEqual({ pending: 1, publishing: 0, sent: 2, failed: 0 })
      clock.advance(2 * 86_400_000)
      expect(await s.outbox.cleanup(1)).toBe(2)
    } finally {
      await d()
    }
  })

  it('commits and rolls back with the caller transaction', async () => {
    const connection = await pool.getConnection()
    try {
      await connection.beginTransaction()
      await store.outbox.findOrCreate(
        { eventId: 'tx-rolled-back', subject: 's', payload: 'p' },
        { tx: connection },
      )
      await connection.rollback()
      await connection.beginTransaction()
      await store.outbox.findOrCreate(
        { eventId: 'tx-committed', subject: 's', payload: 'p' },
        { tx: connection },
      )
      await connection.commit()
    } finally {
      connection.release()
    }
    expect(await store.outbox.get('tx-rolled-back')).toBeNull()
    expect(await store.outbox.get('tx-committed')).not.toBeNull()
  })

  it('gives exactly one of 20 concurrent inbox claims shouldProcess and counts 20 deliveries', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        store.inbox.claim(
          { eventId: 'race-1', subject: 's', payload: 'p' },
          { leaseMs: 1000, workerId: `w${i}` },
        ),
      ),
    )
    expect(results.filter((result) => result.shouldProcess)).toHaveLength(1)
    expect((await store.inbox.get('race-1'))?.deliveries).toBe(20)
  })

  it('stores one row for 20 concurrent outbox findOrCreate of one id', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        store.outbox.findOrCreate({ eventId: 'race-2', subject: 's', payload: `p${i}` }),
      ),
    )
    expect(new Set(results.map((event) => event.enqueuedAt.getTime())).size).toBe(1)
    expect(new Set(results.map((event) => event.payload)).size).toBe(1)
    const [row] = await raw(
      `SELECT COUNT(*) AS n FROM \`${store.tablePrefix}outbox\` WHERE event_id = 'race-2'`,
    )
    expect(Number(row?.n)).toBe(1)
  })

  it('treats a stored (stream, streamSeq) under a new id as a new event (a re-created stream restarts at 1)', async () => {
    await store.inbox.findOrCreate({ eventId: 'js-1', subject: 's', payload: 'p', stream: 'S', streamSeq: 7 })
    const reused = await store.inbox.claim(
      { eventId: 'js-1-after-recreate', subject: 's', payload: 'p', stream: 'S', streamSeq: 7 },
      { leaseMs: 10, workerId: 'w' },
    )
    expect(reused).toMatchObject({
      shouldProcess: true,
      event: { eventId: 'js-1-after-recreate', deliveries: 1 },
    })
    expect((await store.inbox.get('js-1'))?.deliveries).toBe(1)
  })

  it('wraps driver errors in StorageError with the cause, and validates before any I/O', async () => {
    const broken = createMySqlStore({ pool, tablePrefix: 'missing_tables_' })
    const error = await broken.outbox.get('x').catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(StorageError)
    expect((error as StorageError).message).toMatch(/^\[txbox\] \[mysql\] outbox\.get failed: /)
    expect((error as { cause?: { errno?: number } }).cause?.errno).toBe(1146)
    await expect(broken.outbox.get('')).rejects.toBeInstanceOf(ValidationError)
    expect(() => createMySqlStore({ pool, tablePrefix: 'bad-prefix' })).toThrow(ValidationError)
    // DATETIME cannot hold year 10000: the server says so, wrapped.
    await expect(
      store.outbox.findOrCreate({
        eventId: 'far',
        subject: 's',
        payload: 'p',
        availableAt: new Date(Date.UTC(10000, 0)),
      }),
    ).rejects.toBeInstanceOf(StorageError)
  })

  it('rejects an event over max_allowed_packet with PayloadTooLargeError instead of losing the connection', async () => {
    const limit = await store.serverMaxEventBytes()
    const [[server]] = await pool.query<RowDataPacket[]>('SELECT @@max_allowed_packet AS bytes')
    expect(limit).toBe(Number(server?.bytes) - 16 * 1024)
    const payload = 'x'.repeat(limit)
    await expect(
      store.outbox.findOrCreate({ eventId: 'huge', subject: 's', payload }),
    ).rejects.toBeInstanceOf(PayloadTooLargeError)
    // With maxEventBytes at the server's limit, an event whose NATS message fits can still be
    // over the packet: the statement also carries the subject and the headers' JSON quoting.
    const atServerLimit = createMySqlStore({ pool, tablePrefix: store.tablePrefix, maxEventBytes: limit })
    await atServerLimit.migrate()
    const headers = JSON.stringify(
      Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, 'v'])),
    )
    const subject = 's'.repeat(500)
    const rest = Buffer.byteLength(headers) + subject.length + 'packet'.length
    const packetOnly = { eventId: 'packet', subject, headers, payload: 'x'.repeat(limit - rest + 1) }
    expect(natsMessageBytes(packetOnly)).toBeLessThanOrEqual(limit)
    await expect(atServerLimit.outbox.findOrCreate(packetOnly)).rejects.toMatchObject({
      name: 'PayloadTooLargeError',
      sizeBytes: limit + 1,
      limitBytes: limit,
    })
    expect(await store.outbox.get('packet')).toBeNull()
    // An option the server could never honour fails at migrate(), naming it.
    const over = createMySqlStore({ pool, tablePrefix: store.tablePrefix, maxEventBytes: limit + 1 })
    await expect(over.migrate()).rejects.toThrow(/maxEventBytes must be at most/)
    await expect(
      over.outbox.findOrCreate({ eventId: 'o', subject: 's', payload: 'p' }),
    ).rejects.toBeInstanceOf(ValidationError)
    await expect(
      store.inbox.claim({ eventId: 'huge', subject: 's', payload }, { leaseMs: 1, workerId: 'w' }),
    ).rejects.toBeInstanceOf(PayloadTooLargeError)
    expect(await store.outbox.get('huge')).toBeNull()
  })

  it('refuses to write through a utf8mb3 connection, where emoji would not survive', async () => {
    const narrow = makePool({ charset: 'UTF8_GENERAL_CI', connectionLimit: 1 })
    try {
      const local = createMySqlStore({ pool: narrow, tablePrefix: store.tablePrefix })
      const error = await local.outbox
        .findOrCreate({ eventId: 'narrow', subject: 's', payload: '😀' })
        .catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(StorageError)
      expect((error as Error).message).toMatch(/not utf8mb4/)
    } finally {
      await narrow.end()
    }
    expect(await store.outbox.get('narrow')).toBeNull()
  })
})
