import { StorageError, type StorageErrorReason } from '@txbox/core'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import { classifySqliteError, classifySqliteMigrationError } from '../src/errors.js'
import { createSqliteStore } from '../src/index.js'
import { event, openStore, tempDirectory } from './helpers.js'

const temp = tempDirectory()
afterAll(() => temp.cleanup())

/** What a repository call rejects with. */
const failure = async (call: Promise<unknown>): Promise<StorageError> => {
  const error = await call.then(
    () => undefined,
    (caught: unknown) => caught,
  )
  expect(error).toBeInstanceOf(StorageError)
  return error as StorageError
}

/** What the driver throws from `run`. */
const thrown = (run: () => unknown): unknown => {
  try {
    run()
  } catch (error) {
    return error
  }
  throw new Error('expected the driver to throw')
}

describe('classifySqliteError on errors of a real SQLite', () => {
  it('a missing table (no migrate()) is schema, not retryable, with the hint', async () => {
    const db = new Database(':memory:')
    const error = await failure(createSqliteStore({ db }).outbox.findOrCreate(event('x')))
    expect(error).toMatchObject({ reason: 'schema', retryable: false, operation: 'outbox.findOrCreate' })
    expect(error.message).toBe(
      '[txbox] [sqlite] outbox.findOrCreate failed: SQLITE_ERROR: no such table: txbox_outbox (did you run migrate()?)',
    )
    expect(error.cause).toBeInstanceOf(Database.SqliteError)
    db.close()
  })

  it('a closed Database is unavailable, not retryable', async () => {
    const { db, store } = await openStore(':memory:')
    db.close()
    const error = await failure(store.inbox.get('x'))
    expect(error).toMatchObject({ reason: 'unavailable', retryable: false, operation: 'inbox.get' })
    expect(error.message).toContain('The database connection is not open')
  })

  it('the write lock held past the busy timeout (SQLITE_BUSY) is a retryable timeout', async () => {
    const file = temp.file('busy.db')
    const { db: holder } = await openStore(file)
    const db = new Database(file, { timeout: 0 })
    holder.exec('BEGIN IMMEDIATE')
    const error = await failure(createSqliteStore({ db }).outbox.findOrCreate(event('blocked')))
    expect(error).toMatchObject({ reason: 'timeout', retryable: true })
    expect(error.message).toContain('SQLITE_BUSY: database is locked (the database stayed locked')
    holder.exec('ROLLBACK')
    holder.close()
    db.close()
  })

  it('a write after another connection committed under a read snapshot (SQLITE_BUSY_SNAPSHOT) is a retryable conflict', async () => {
    const file = temp.file('snapshot.db')
    const { db: reader } = await openStore(file)
    const { db: writer, store } = await openStore(file)
    reader.exec('BEGIN')
    reader.prepare('SELECT COUNT(*) FROM txbox_outbox').get()
    await store.outbox.findOrCreate(event('committed-meanwhile'))
    const error = thrown(() =>
      reader.prepare("UPDATE txbox_outbox SET subject = 'late' WHERE event_id = 'committed-meanwhile'").run(),
    )
    expect((error as { code?: string }).code).toBe('SQLITE_BUSY_SNAPSHOT')
    expect(classifySqliteError(error)).toMatchObject({ reason: 'conflict', retryable: true })
    reader.exec('ROLLBACK')
    reader.close()
    writer.close()
  })

  it('a read-only connection is permission', async () => {
    const file = temp.file('readonly.db')
    const { db: owner } = await openStore(file)
    owner.close()
    const db = new Database(file, { readonly: true })
    const error = await failure(createSqliteStore({ db }).outbox.findOrCreate(event('x')))
    expect(error).toMatchObject({ reason: 'permission', retryable: false })
    expect(error.message).toContain('SQLITE_READONLY')
    db.close()
  })

  it('a constraint the adapter never expects is unknown, with its code', () => {
    const db = new Database(':memory:')
    db.exec('CREATE TABLE t (x UNIQUE); INSERT INTO t VALUES (1)')
    const error = thrown(() => db.exec('INSERT INTO t VALUES (1)'))
    expect(classifySqliteError(error)).toEqual({
      reason: 'unknown',
      retryable: false,
      detail: 'SQLITE_CONSTRAINT_UNIQUE: UNIQUE constraint failed: t.x',
    })
    db.close()
  })
})

describe('classifySqliteError on constructed driver errors', () => {
  const cases: [code: string, reason: StorageErrorReason, retryable: boolean][] = [
    ['SQLITE_BUSY_RECOVERY', 'timeout', true],
    ['SQLITE_LOCKED', 'conflict', true],
    ['SQLITE_LOCKED_SHAREDCACHE', 'conflict', true],
    ['SQLITE_SCHEMA', 'conflict', true],
    ['SQLITE_READONLY_DBMOVED', 'permission', false],
    ['SQLITE_PERM', 'permission', false],
    ['SQLITE_AUTH', 'permission', false],
    ['SQLITE_CANTOPEN', 'unavailable', false],
    ['SQLITE_IOERR_WRITE', 'unavailable', true],
    ['SQLITE_FULL', 'limit', false],
    ['SQLITE_TOOBIG', 'limit', false],
    ['SQLITE_CORRUPT', 'unknown', false],
    ['SQLITE_ERROR', 'unknown', false],
  ]
  it.each(cases)('%s is %s (retryable: %s), its code in the detail', (code, reason, retryable) => {
    const error = new Database.SqliteError('the driver message', code)
    expect(classifySqliteError(error)).toEqual({
      reason,
      retryable,
      detail: expect.stringMatching(new RegExp(`^${code}: the driver message`)),
    })
  })

  it('anything that is not a SQLite error is unknown, and keeps its own message', () => {
    expect(classifySqliteError(new Error('boom'))).toEqual({ reason: 'unknown', retryable: false })
    expect(classifySqliteError(new TypeError('not the closed message'))).toEqual({
      reason: 'unknown',
      retryable: false,
    })
    expect(classifySqliteError({ code: 'ECONNRESET' })).toEqual({ reason: 'unknown', retryable: false })
  })

  it('inside migrate() a missing table is schema without the "run migrate()" hint', () => {
    const error = new Database.SqliteError('no such column: stream', 'SQLITE_ERROR')
    expect(classifySqliteMigrationError(error)).toEqual({
      reason: 'schema',
      retryable: false,
      detail: 'SQLITE_ERROR: no such column: stream',
    })
    expect(classifySqliteError(error).detail).toBe(
      'SQLITE_ERROR: no such column: stream (did you run migrate()?)',
    )
  })
})
