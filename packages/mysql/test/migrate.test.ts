import type { Pool, RowDataPacket } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMySqlStore } from '../src/index.js'
import { freshPrefix, makePool, SKIP, SKIP_REASON } from './helpers.js'

describe.skipIf(SKIP)(`migrate${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  let pool: Pool
  const prefix = freshPrefix()

  beforeAll(() => {
    pool = makePool()
  })

  afterAll(async () => {
    await pool?.query(
      `DROP TABLE IF EXISTS \`${prefix}outbox\`, \`${prefix}inbox\`, \`${prefix}schema_version\``,
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
    ])
    const [columns] = await pool.query<RowDataPacket[]>(
      `SELECT COLUMN_NAME AS name, COLLATION_NAME AS coll FROM information_schema.COLUMNS
       WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME IN ('event_id', 'payload')`,
      [`${prefix}outbox`],
    )
    const collations = Object.fromEntries(columns.map((row) => [row.name, row.coll]))
    expect(collations.event_id).toMatch(/^utf8mb4_(nopad_bin|0900_bin)$/)
    expect(collations.payload).toBe('utf8mb4_bin')
  })

  it('re-runs a step whose version row is missing without failing (each DDL is idempotent)', async () => {
    await pool.query(`DELETE FROM \`${prefix}schema_version\` WHERE version = 2`)
    await createMySqlStore({ pool, tablePrefix: prefix }).migrate()
    const [versions] = await pool.query<RowDataPacket[]>(
      `SELECT COUNT(*) AS n FROM \`${prefix}schema_version\``,
    )
    expect(Number(versions[0]?.n)).toBe(2)
  })
})
