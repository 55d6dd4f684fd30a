import { EventNotFoundError } from '@txbox/core'
import { createPool, type Pool, type RowDataPacket } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { detectDialect } from '../src/dialect.js'
import { createMySqlStore, type MySqlStore } from '../src/index.js'
import { freshPrefix } from './helpers.js'

// The MySQL-only branches, on a real MySQL 8 (`bash scripts/services.sh up mysql8`, which
// exports TXBOX_MYSQL8_URL): MariaDB, where the other tests run, never takes them.
const MYSQL8_URL = process.env.TXBOX_MYSQL8_URL
const SKIP = MYSQL8_URL === undefined && process.env.TXBOX_REQUIRE_ALL !== '1'
const SKIP_REASON = 'TXBOX_MYSQL8_URL is not set (start MySQL 8 with `bash scripts/services.sh up mysql8`)'

describe.skipIf(SKIP)(`MySQL 8${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  let pool: Pool
  let store: MySqlStore

  beforeAll(async () => {
    if (MYSQL8_URL === undefined) throw new Error(`TXBOX_REQUIRE_ALL=1 but ${SKIP_REASON}`)
    pool = createPool({ uri: MYSQL8_URL, connectionLimit: 4 })
    store = createMySqlStore({ pool, tablePrefix: freshPrefix() })
    await store.migrate()
  })

  afterAll(async () => {
    const p = store?.tablePrefix
    if (p)
      await pool.query(
        `DROP TABLE IF EXISTS \`${p}outbox\`, \`${p}outbox_keys\`, \`${p}inbox\`, \`${p}schema_version\``,
      )
    await pool?.end()
  })

  it('is read as MySQL, not MariaDB, and collates ids utf8mb4_0900_bin (binary, NO PAD)', async () => {
    const dialect = await detectDialect(pool)
    expect(dialect).toMatchObject({ name: 'mysql', idCollation: 'utf8mb4_0900_bin' })
    expect(dialect.label).toMatch(/^MySQL 8\./)
    const [columns] = await pool.query<RowDataPacket[]>(
      `SELECT TABLE_NAME AS t, COLUMN_NAME AS c, COLLATION_NAME AS collation
         FROM information_schema.COLUMNS
        WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (?, ?) AND COLUMN_NAME = 'event_id'`,
      [`${store.tablePrefix}outbox`, `${store.tablePrefix}inbox`],
    )
    expect(columns).toHaveLength(2)
    for (const column of columns) expect(column.collation).toBe('utf8mb4_0900_bin')
  })

  it('keeps ids byte-exact: a trailing space or another case is another id', async () => {
    const ids = ['Case', 'case', 'cafe\u0301', 'café']
    for (const eventId of ids) await store.outbox.findOrCreate({ eventId, subject: 's', payload: eventId })
    for (const eventId of ids) expect((await store.outbox.get(eventId))?.payload).toBe(eventId)
    // Under utf8mb4_bin (PAD SPACE, MySQL before 8.0.17) `case ` would find the row of `case`.
    expect(await store.outbox.get('case ')).toBeNull()
    await expect(store.outbox.markAsSent('case ')).rejects.toBeInstanceOf(EventNotFoundError)
    await store.inbox.findOrCreate({ eventId: 'in', subject: 's', payload: '2' })
    expect(await store.inbox.get('in ')).toBeNull()
  })
})
