import { renderMigration } from '@txbox/core'
import type { ResultSetHeader } from 'mysql2/promise'
import { describe, expect, it } from 'vitest'
import { insertedRows, type Queryable, selectRows } from '../src/client.js'
import { mySqlMigrations } from '../src/migrate.js'
import { compareSeq, fromDateTime, toDateTime } from '../src/rows.js'
import { chunk, insertSize, listSize, MAX_INSERT_ROWS, padList } from '../src/sql.js'

describe('statement helpers (no server)', () => {
  it('pads id lists to a few fixed lengths by repeating the last value', () => {
    expect([1, 2, 3, 5, 17, 513, 1000].map(listSize)).toEqual([1, 2, 4, 8, 32, 1000, 1000])
    expect(padList(['a', 'b', 'c'])).toEqual(['a', 'b', 'c', 'c'])
    expect(chunk([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]])
  })

  it('pads multi-row inserts by at most a quarter, to a bounded set of row counts', () => {
    expect([1, 7, 8, 9, 100, 129, 500, 512].map(insertSize)).toEqual([1, 7, 8, 10, 112, 160, 512, 512])
    const sizes = new Set(Array.from({ length: MAX_INSERT_ROWS }, (_, i) => insertSize(i + 1)))
    expect(sizes.size).toBe(32)
    for (let n = 1; n <= MAX_INSERT_ROWS; n++) {
      expect(insertSize(n)).toBeGreaterThanOrEqual(n)
      expect(insertSize(n)).toBeLessThanOrEqual(Math.max(n, Math.ceil(n * 1.25)))
    }
    expect(padList(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'], insertSize)).toHaveLength(10)
  })

  it('formats and parses DATETIME(3) as UTC, whatever the process time zone', () => {
    const date = new Date(Date.UTC(2026, 2, 29, 1, 30, 0, 7))
    expect(toDateTime(date)).toBe('2026-03-29 01:30:00.007')
    expect(fromDateTime('2026-03-29 01:30:00.007').getTime()).toBe(date.getTime())
    expect(() => fromDateTime('not a date')).toThrow(TypeError)
  })

  it('orders BIGINT seq strings numerically', () => {
    expect(['10', '9', '100', '11'].sort(compareSeq)).toEqual(['9', '10', '11', '100'])
  })

  it('ships the DDL files migrate() runs, with both placeholders filled', () => {
    const files = mySqlMigrations()
    expect(files.map((file) => [file.version, file.name])).toEqual([
      [1, 'outbox'],
      [2, 'inbox'],
      [3, 'inbox_id_only'],
      [4, 'ordering_keys'],
    ])
    const sql = renderMigration(files[0]?.body ?? '', { prefix: 'app_', id_collation: 'utf8mb4_nopad_bin' })
    expect(sql).toContain('CREATE TABLE IF NOT EXISTS `app_outbox`')
    expect(sql).toContain('COLLATE utf8mb4_nopad_bin NOT NULL')
    expect(sql).not.toContain('{{')
  })

  it('reads how many rows an INSERT ... ON DUPLICATE KEY UPDATE inserted from the server answer, or says it cannot', () => {
    const header = (fields: { affectedRows: number; insertId?: number; info?: string }) =>
      ({ insertId: 0, info: '', ...fields }) as unknown as ResultSetHeader
    // One row: the new auto-increment id, 0 for a duplicate, whatever the affected rows say.
    expect(insertedRows(header({ affectedRows: 1, insertId: 42 }), 1)).toBe(1)
    expect(insertedRows(header({ affectedRows: 1, insertId: 0 }), 1)).toBe(0)
    expect(insertedRows(header({ affectedRows: 0, insertId: 0 }), 1)).toBe(0)
    expect(insertedRows({ affectedRows: 1 } as unknown as ResultSetHeader, 1)).toBe(0)
    // Several rows: affected less duplicates, with CLIENT_FOUND_ROWS (duplicates counted in
    // both) and without (in neither); a translated message has the same three numbers.
    expect(insertedRows(header({ affectedRows: 4, info: 'Records: 4  Duplicates: 1  Warnings: 0' }), 4)).toBe(
      3,
    )
    expect(insertedRows(header({ affectedRows: 3, info: 'Records: 4  Duplicates: 0  Warnings: 0' }), 4)).toBe(
      3,
    )
    expect(
      insertedRows(header({ affectedRows: 4, info: 'Datensätze: 4  Duplikate: 0  Warnungen: 0' }), 4),
    ).toBe(4)
    // No message (a handle answering through an ORM), another statement's, or a count that
    // does not match the statement: unknown, so the caller reads the rows back.
    expect(insertedRows(header({ affectedRows: 4 }), 4)).toBeUndefined()
    expect(insertedRows({ affectedRows: 4 } as unknown as ResultSetHeader, 4)).toBeUndefined()
    expect(
      insertedRows(header({ affectedRows: 4, info: 'Records: 8  Duplicates: 0  Warnings: 0' }), 4),
    ).toBeUndefined()
    expect(insertedRows(header({ affectedRows: 4, info: 'Rows matched: 4  Changed: 4' }), 4)).toBeUndefined()
  })

  it("bypasses a pool's global typeCast on reads, and only where there is one or the config is unknown", async () => {
    const seen: Record<string, unknown>[] = []
    const fake = (shape: object): Queryable =>
      ({
        ...shape,
        execute: async (options: Record<string, unknown>) => {
          seen.push(options)
          return [[]]
        },
      }) as unknown as Queryable
    await selectRows(fake({ pool: { config: { connectionConfig: { typeCast: true } } } }), 'SELECT 1', [])
    await selectRows(fake({ connection: { config: { typeCast: true } } }), 'SELECT 1', [])
    await selectRows(
      fake({ pool: { config: { connectionConfig: { typeCast: () => 'x' } } } }),
      'SELECT 1',
      [],
    )
    await selectRows(fake({ connection: { config: { typeCast: () => 'x' } } }), 'SELECT 1', [])
    await selectRows(fake({}), 'SELECT 1', [])
    expect(seen.map((options) => typeof options.typeCast)).toEqual([
      'undefined',
      'undefined',
      'function',
      'function',
      'function',
    ])
    for (const options of seen) expect(options).toMatchObject({ dateStrings: true, bigNumberStrings: true })
  })
})
