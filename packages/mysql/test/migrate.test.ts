import { applyMigrations, ManualClock, renderMigration, StorageError } from '@txbox/core'
import type { Pool, RowDataPacket } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { detectDialect } from '../src/dialect.js'
import { createMySqlStore } from '../src/index.js'
import { MySqlMigrationHistory, mySqlMigrations } from '../src/migrate.js'
import { schemaVersionSql, tableNames } from '../src/sql.js'
import { freshPrefix, makePool, SKIP, SKIP_REASON } from './helpers.js'

describe.skipIf(SKIP)(`migrate${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  let pool: Pool
  const prefix = freshPrefix()

  /**
   * The schema and history as the release before the shared migration mechanism left them
   * after applying versions 1..`upTo`: its own DDL loop, names `0001_outbox`..., its times.
   */
  const migrateAsPreviousRelease = async (tablePrefix: string, upTo: number): Promise<void> => {
    const idCollation = (await detectDialect(pool)).idCollation
    const versions = schemaVersionSql(tableNames(tablePrefix).schemaVersion)
    await pool.query(versions.create)
    for (const step of mySqlMigrations().filter((m) => m.version <= upTo)) {
      await pool.query(renderMigration(step.body, { prefix: tablePrefix, id_collation: idCollation }))
      const name = `${String(step.version).padStart(4, '0')}_${step.name}`
      await pool.query(versions.record, [step.version, name, '2025-06-01 08:00:00.000'])
    }
  }

  beforeAll(() => {
    pool = makePool()
  })

  afterAll(async () => {
    await pool?.query(
      `DROP TABLE IF EXISTS \`${prefix}outbox\`, \`${prefix}outbox_keys\`, \`${prefix}inbox\`, \`${prefix}schema_version\``,
    )
    await pool?.end()
  })

  it('succeeds from four concurrent migrators, then again, and records each version once', async () => {
    // Separate pools: separate sessions, like separate processes.
    const pools = Array.from({ length: 4 }, () => makePool({ connectionLimit: 1 }))
    try {
      await Promise.all(pools.map((p) => createMySqlStore({ pool: p, tablePrefix: prefix }).migrate()))
      await createMySqlStore({ pool, tablePrefix: prefix }).migrate()
    } finally {
      await Promise.all(pools.map((p) => p.end()))
    }
    const [versions] = await pool.query<RowDataPacket[]>(
      `SELECT version, name FROM \`${prefix}schema_version\` ORDER BY version`,
    )
    expect(versions.map((row) => [row.version, row.name])).toEqual([
      [1, '0001_outbox'],
      [2, '0002_inbox'],
      [3, '0003_inbox_id_only'],
      [4, '0004_ordering_keys'],
    ])
    const [columns] = await pool.query<RowDataPacket[]>(
      `SELECT TABLE_NAME AS t, COLUMN_NAME AS name, COLLATION_NAME AS coll FROM information_schema.COLUMNS
       WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (?, ?) AND COLUMN_NAME IN ('event_id', 'payload', 'ordering_key')`,
      [`${prefix}outbox`, `${prefix}outbox_keys`],
    )
    const collations = Object.fromEntries(
      columns.map((row) => [`${row.t.slice(prefix.length)}.${row.name}`, row.coll]),
    )
    expect(collations['outbox.event_id']).toMatch(/^utf8mb4_(nopad_bin|0900_bin)$/)
    expect(collations['outbox.payload']).toBe('utf8mb4_bin')
    // Ordering keys compare like ids: binary and NO PAD, in the events and in the counters.
    expect(collations['outbox.ordering_key']).toBe(collations['outbox.event_id'])
    expect(collations['outbox_keys.ordering_key']).toBe(collations['outbox.event_id'])
  })

  it('re-runs a step whose version row is missing without failing (each DDL is idempotent)', async () => {
    // Version 3 drops a key that is already gone, version 4 adds columns and a key that are
    // already there: migrate() must count both as done.
    await pool.query(`DELETE FROM \`${prefix}schema_version\` WHERE version IN (2, 3, 4)`)
    await createMySqlStore({ pool, tablePrefix: prefix }).migrate()
    const [versions] = await pool.query<RowDataPacket[]>(
      `SELECT COUNT(*) AS n FROM \`${prefix}schema_version\``,
    )
    expect(Number(versions[0]?.n)).toBe(4)
  })

  it('completes version 4 when only its first statement ran (a migrator stopped halfway)', async () => {
    const half = freshPrefix()
    const drop = () =>
      pool.query(
        `DROP TABLE IF EXISTS \`${half}outbox\`, \`${half}outbox_keys\`, \`${half}inbox\`, \`${half}schema_version\``,
      )
    try {
      await migrateAsPreviousRelease(half, 3)
      // The columns of version 4 without its index, counter table or history row.
      await pool.query(
        `ALTER TABLE \`${half}outbox\` ADD COLUMN ordering_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE ${(await detectDialect(pool)).idCollation} NULL, ADD COLUMN key_seq BIGINT NULL`,
      )
      const store = createMySqlStore({ pool, tablePrefix: half })
      await store.migrate()
      const [keys] = await pool.query<RowDataPacket[]>(
        `SELECT DISTINCT INDEX_NAME AS name FROM information_schema.STATISTICS
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`,
        [`${half}outbox`],
      )
      expect(keys.map((row) => row.name)).toContain('ix_key_head')
      expect(
        (await store.outbox.findOrCreate({ eventId: 'k1', subject: 's', payload: 'p', orderingKey: 'A' }))
          .keySeq,
      ).toBe(1)
    } finally {
      await drop()
    }
  })

  it('upgrades a version 2 schema: a new id at a stored (stream, streamSeq) is a new event', async () => {
    const old = freshPrefix()
    const drop = () =>
      pool.query(
        `DROP TABLE IF EXISTS \`${old}outbox\`, \`${old}outbox_keys\`, \`${old}inbox\`, \`${old}schema_version\``,
      )
    try {
      // The schema exactly as version 2 of migrate() left it, with its UNIQUE (stream, stream_seq).
      await migrateAsPreviousRelease(old, 2)
      const store = createMySqlStore({ pool, tablePrefix: old })
      const lease = { leaseMs: 30_000, workerId: 'w' }
      const first = {
        eventId: 'old-7',
        subject: 'orders.created',
        payload: '{}',
        stream: 'ORDERS',
        streamSeq: 7,
      }
      expect((await store.inbox.claim(first, lease)).shouldProcess).toBe(true)
      await store.inbox.markAsProcessed('old-7')
      const reused = { ...first, eventId: 'new-7' }
      // Before the upgrade the old key refuses the new event (version 2's queries merged it).
      await expect(store.inbox.claim(reused, lease)).rejects.toThrow(StorageError)

      await store.migrate()
      const claimed = await store.inbox.claim(reused, lease)
      expect(claimed.shouldProcess).toBe(true)
      expect(claimed.event).toMatchObject({ eventId: 'new-7', stream: 'ORDERS', streamSeq: 7, deliveries: 1 })
      expect(await store.inbox.findOrCreate({ ...first, eventId: 'other-7' })).toMatchObject({
        eventId: 'other-7',
        deliveries: 1,
      })
      expect((await store.inbox.get('old-7'))?.status).toBe('processed')
      const [keys] = await pool.query<RowDataPacket[]>(
        `SELECT DISTINCT INDEX_NAME AS name FROM information_schema.STATISTICS
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`,
        [`${old}inbox`],
      )
      expect(keys.map((row) => row.name)).not.toContain('ux_stream_seq')
    } finally {
      await drop()
    }
  })
  it('recognises a history the previous release wrote: only version 4 is applied, stored events stay, the store works', async () => {
    const old = freshPrefix()
    const drop = () =>
      pool.query(
        `DROP TABLE IF EXISTS \`${old}outbox\`, \`${old}outbox_keys\`, \`${old}inbox\`, \`${old}schema_version\``,
      )
    const history = async () =>
      (
        await pool.query<RowDataPacket[]>(
          `SELECT version, name, CAST(applied_at AS CHAR) AS at FROM \`${old}schema_version\` ORDER BY version`,
        )
      )[0].map((row) => [row.version, row.name, row.at])
    try {
      await migrateAsPreviousRelease(old, 3)
      const before = await history()
      expect(before).toHaveLength(3)
      // An event the previous release stored, still pending at the upgrade.
      await pool.query(
        `INSERT INTO \`${old}outbox\` (event_id, subject, payload, status, enqueued_at, available_at) VALUES ('stored', 's', 'p', 'pending', '2025-06-01 08:00:00.000', '2025-06-01 08:00:00.000')`,
      )
      const clock = new ManualClock(Date.UTC(2026, 0, 1))
      // The core mechanism over this history: versions 1-3 are recorded, so only 4 runs.
      expect(
        await applyMigrations(new MySqlMigrationHistory(pool, old), mySqlMigrations(), clock.now),
      ).toEqual([4])
      const store = createMySqlStore({ pool, tablePrefix: old, clock: clock.now })
      await store.migrate()
      expect(await history()).toEqual([...before, [4, '0004_ordering_keys', '2026-01-01 00:00:00.000']])
      const stored = await store.outbox.get('stored')
      expect(stored).toMatchObject({ eventId: 'stored', status: 'pending' })
      expect(stored).not.toHaveProperty('orderingKey')
      expect(stored).not.toHaveProperty('keySeq')
      await store.outbox.findOrCreate({ eventId: 'kept', subject: 's', payload: 'p', orderingKey: 'order-1' })
      expect(
        (await store.outbox.claim({ limit: 5, leaseMs: 1000, workerId: 'w' })).map((e) => [
          e.eventId,
          e.keySeq,
        ]),
      ).toEqual([
        ['stored', undefined],
        ['kept', 1],
      ])
      expect(
        (
          await store.inbox.claim(
            { eventId: 'in', subject: 's', payload: 'p' },
            { leaseMs: 1000, workerId: 'w' },
          )
        ).shouldProcess,
      ).toBe(true)
    } finally {
      await drop()
    }
  })

  it('applies only the missing versions of a partial history and answers them', async () => {
    const partial = freshPrefix()
    const drop = () =>
      pool.query(
        `DROP TABLE IF EXISTS \`${partial}outbox\`, \`${partial}outbox_keys\`, \`${partial}inbox\`, \`${partial}schema_version\``,
      )
    try {
      await migrateAsPreviousRelease(partial, 1)
      const clock = new ManualClock(Date.UTC(2026, 0, 1, 0, 0, 0, 5))
      expect(
        await applyMigrations(new MySqlMigrationHistory(pool, partial), mySqlMigrations(), clock.now),
      ).toEqual([2, 3, 4])
      const [rows] = await pool.query<RowDataPacket[]>(
        `SELECT version, name, CAST(applied_at AS CHAR) AS at FROM \`${partial}schema_version\` ORDER BY version`,
      )
      expect(rows.map((row) => [row.version, row.name, row.at])).toEqual([
        [1, '0001_outbox', '2025-06-01 08:00:00.000'],
        [2, '0002_inbox', '2026-01-01 00:00:00.005'],
        [3, '0003_inbox_id_only', '2026-01-01 00:00:00.005'],
        [4, '0004_ordering_keys', '2026-01-01 00:00:00.005'],
      ])
    } finally {
      await drop()
    }
  })
})
