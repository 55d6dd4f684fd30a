import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { ManualClock, ValidationError } from '@txbox/core'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import { connectSqlite, createSqliteStore, type SqliteDatabase } from '../src/index.js'
import { event, openStore, tempDirectory } from './helpers.js'

/**
 * Every option a caller can get wrong, each refused with its own message: the adapter's own
 * API, which the conformance target always feeds valid values.
 */
const temp = tempDirectory()
afterAll(() => temp.cleanup())

/** The message of the ValidationError `create` throws; anything else fails the test. */
const refusal = (create: () => unknown): string => {
  try {
    create()
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError)
    return (error as Error).message
  }
  throw new Error('expected a ValidationError')
}

const NOT_A_DATABASE = '[txbox] [sqlite] db must be a better-sqlite3 Database (new Database(file))'

describe('createSqliteStore options', () => {
  it('refuses options that are not an object', () => {
    for (const options of [null, undefined, 5, 'app.db']) {
      expect(refusal(() => createSqliteStore(options as never))).toBe(
        '[txbox] [sqlite] options must be an object with a better-sqlite3 Database as `db`',
      )
    }
  })

  it('refuses a db that lacks any part of a better-sqlite3 Database, even a function carrying them', () => {
    const parts = { prepare: () => {}, transaction: () => {}, inTransaction: false, open: true }
    const { prepare: _p, ...noPrepare } = parts
    const { transaction: _t, ...noTransaction } = parts
    const lookalikes: unknown[] = [
      null,
      'app.db',
      Object.assign(() => {}, parts),
      noPrepare,
      noTransaction,
      { ...parts, inTransaction: 'no' },
    ]
    for (const db of lookalikes) {
      expect(refusal(() => createSqliteStore({ db: db as SqliteDatabase }))).toBe(NOT_A_DATABASE)
    }
  })

  it('refuses a clock that is not a function and a prefix that is not an identifier, naming the option', () => {
    const db = new Database(':memory:')
    expect(refusal(() => createSqliteStore({ db, clock: 'now' as never }))).toBe(
      '[txbox] [sqlite] clock must be a function returning a Date',
    )
    expect(refusal(() => createSqliteStore({ db, tablePrefix: 'x y' }))).toContain('tablePrefix')
    db.close()
  })

  it('takes busyTimeoutMs as an integer >= 0 (0 included) and sets it on the connection', () => {
    const db = new Database(':memory:')
    for (const busyTimeoutMs of [-1, 1.5, Number.NaN]) {
      expect(refusal(() => createSqliteStore({ db, busyTimeoutMs }))).toBe(
        `[txbox] [sqlite] busyTimeoutMs must be an integer >= 0; got ${String(busyTimeoutMs)}`,
      )
    }
    createSqliteStore({ db, busyTimeoutMs: 0 })
    expect(db.pragma('busy_timeout', { simple: true })).toBe(0)
    createSqliteStore({ db, busyTimeoutMs: 1234 })
    expect(db.pragma('busy_timeout', { simple: true })).toBe(1234)
    db.close()
  })
})

describe('what the store says and stores', () => {
  it('says why a tx of another connection is refused', async () => {
    const file = temp.file('foreign-tx.db')
    const { db, store } = await openStore(file)
    const other = new Database(file)
    await expect(store.outbox.findOrCreate(event('x'), { tx: other })).rejects.toThrow(
      '[txbox] [sqlite] tx must be the better-sqlite3 Database this store was created with: a different connection cannot join its transaction',
    )
    other.close()
    db.close()
  })

  it('says why a claim inside an open transaction is refused', async () => {
    const { db, store } = await openStore(':memory:')
    db.exec('BEGIN')
    await expect(store.outbox.claim({ workerId: 'w', leaseMs: 1_000 })).rejects.toThrow(
      '[txbox] [sqlite] claim cannot run while a transaction is open on this connection: it could claim events ' +
        'that the transaction later rolls back. Claim outside the transaction, or give the relay its own connection.',
    )
    db.exec('ROLLBACK')
    db.close()
  })

  it('stores the claim time of a new inbox claim', async () => {
    const clock = new ManualClock(new Date('2026-01-01T00:00:00Z'))
    const { db, store } = await openStore(':memory:', { clock: clock.now })
    await store.inbox.claim(event('new'), { workerId: 'w', leaseMs: 1_000 })
    expect(db.prepare("SELECT claimed_at FROM txbox_inbox WHERE event_id = 'new'").pluck().get()).toBe(
      clock.now().getTime(),
    )
    db.close()
  })
})

describe('connectSqlite paths', () => {
  it('refuses a path that is not a string', () => {
    expect(refusal(() => connectSqlite(5 as never))).toBe(
      '[txbox] [sqlite] the path of the database file must be a non-empty string',
    )
    expect(refusal(() => connectSqlite(' '))).toBe(
      '[txbox] [sqlite] the path of the database file must be a non-empty string',
    )
  })

  it('takes a path as a URL only by a scheme at its start', async () => {
    const directory = temp.file('scheme')
    mkdirSync(join(directory, 'a:'), { recursive: true })
    // Not `join`: it would fold the `//` this test is about.
    const connection = connectSqlite(`${directory}/a://app.db`)
    await connection.store.migrate()
    await connection.close()
  })

  it("says why the file cannot be opened, with the driver's message", () => {
    const path = temp.file('missing-directory/app.db')
    let cause: unknown
    const message = refusal(() => {
      try {
        connectSqlite(path)
      } catch (error) {
        cause = (error as Error).cause
        throw error
      }
    })
    expect(cause).toBeInstanceOf(Error)
    expect(message).toBe(
      `[txbox] [sqlite] cannot open the database file ${JSON.stringify(path)}: ${(cause as Error).message}`,
    )
  })
})
