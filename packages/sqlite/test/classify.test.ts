import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { classifySqliteError } from '../src/errors.js'

/** `classifySqliteError` never throws, whatever a caller or a driver hands it. */
describe('classifySqliteError on odd input', () => {
  it('takes values without a usable code as unknown', () => {
    for (const value of [null, undefined, 'SQLITE_BUSY', 42, { code: 5 }, { code: 'ECONNRESET' }]) {
      expect(classifySqliteError(value)).toEqual({ reason: 'unknown', retryable: false })
    }
  })

  it('reads the code of a plain object as a SQLite code', () => {
    expect(classifySqliteError({ code: 'SQLITE_BUSY' })).toMatchObject({ reason: 'timeout', retryable: true })
  })

  it('keeps a code that is no SQLite result code unknown, with the code in the detail', () => {
    expect(classifySqliteError(new Database.SqliteError('odd', 'SQLITE_'))).toEqual({
      reason: 'unknown',
      retryable: false,
      detail: 'SQLITE_: odd',
    })
  })

  it('calls only a SQLITE_ERROR that starts "no such table/index/column" a missing schema', () => {
    const mentions = new Database.SqliteError('near "x": syntax error in no such table: t', 'SQLITE_ERROR')
    expect(classifySqliteError(mentions).reason).toBe('unknown')
    const otherCode = new Database.SqliteError('no such table: t', 'SQLITE_CORRUPT')
    expect(classifySqliteError(otherCode).reason).toBe('unknown')
  })
})
