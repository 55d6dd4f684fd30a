import { StorageError } from '@txbox/core'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import { createSqliteStore } from '../src/index.js'
import { tempDirectory } from './helpers.js'

/**
 * `migrate()` turns WAL on only where SQLite allows it: a file database, writable, outside a
 * transaction. Elsewhere it must still work.
 */
const temp = tempDirectory()
afterAll(() => temp.cleanup())

const tables = (db: Database.Database): string[] =>
  db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all() as string[]

describe('migrate and the journal mode', () => {
  it('succeeds on a read-only connection to a migrated rollback-journal database, which cannot turn WAL on', async () => {
    const file = temp.file('read-only.db')
    const owner = new Database(file)
    await createSqliteStore({ db: owner }).migrate()
    owner.pragma('journal_mode = DELETE')
    owner.close()
    const db = new Database(file, { readonly: true })
    await createSqliteStore({ db }).migrate()
    expect(db.pragma('journal_mode', { simple: true })).toBe('delete')
    db.close()
  })

  it('leaves the journal mode alone (SQLite cannot change it inside a transaction) and commits with the caller', async () => {
    const db = new Database(temp.file('rollback-journal.db'))
    expect(db.pragma('journal_mode', { simple: true })).toBe('delete')
    db.exec('BEGIN')
    await createSqliteStore({ db }).migrate()
    db.exec('COMMIT')
    expect(db.pragma('journal_mode', { simple: true })).toBe('delete')
    expect(tables(db)).toContain('txbox_outbox')
    db.close()
  })

  it("undoes only its own failed step, keeping the caller's writes in the open transaction", async () => {
    const db = new Database(temp.file('failed-step.db'))
    db.exec('CREATE TABLE app (x INTEGER)')
    // Not the inbox: the first step creates the outbox, then fails on an inbox index.
    db.exec('CREATE TABLE txbox_inbox (x INTEGER)')
    db.exec('BEGIN')
    db.exec('INSERT INTO app VALUES (1)')
    const error = await createSqliteStore({ db })
      .migrate()
      .catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(StorageError)
    expect(db.inTransaction).toBe(true)
    expect(tables(db)).toEqual(['app', 'txbox_inbox'])
    db.exec('COMMIT')
    expect(db.prepare('SELECT x FROM app').pluck().all()).toEqual([1])
    db.close()
  })
})
