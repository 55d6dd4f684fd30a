import { renderMigration } from '@txbox/core'
import { describe, expect, it } from 'vitest'
import { mySqlMigrations } from '../src/migrate.js'
import { compareSeq, fromDateTime, toDateTime } from '../src/rows.js'
import { chunk, listSize, padList } from '../src/sql.js'

describe('statement helpers (no server)', () => {
  it('pads id lists to a few fixed lengths by repeating the last value', () => {
    expect([1, 2, 3, 5, 17, 513, 1000].map(listSize)).toEqual([1, 2, 4, 8, 32, 1000, 1000])
    expect(padList(['a', 'b', 'c'])).toEqual(['a', 'b', 'c', 'c'])
    expect(chunk([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]])
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
    ])
    const sql = renderMigration(files[0]?.body ?? '', { prefix: 'app_', id_collation: 'utf8mb4_nopad_bin' })
    expect(sql).toContain('CREATE TABLE IF NOT EXISTS `app_outbox`')
    expect(sql).toContain('COLLATE utf8mb4_nopad_bin NOT NULL')
    expect(sql).not.toContain('{{')
  })
})
