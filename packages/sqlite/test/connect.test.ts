import { StorageError, ValidationError } from '@txbox/core'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import { connectSqlite } from '../src/index.js'
import { event, LEASE, tempDirectory } from './helpers.js'

const temp = tempDirectory()
afterAll(() => temp.cleanup())

describe('connectSqlite', () => {
  it('opens the file, migrates, enqueues in the caller transaction, answers the version, closes twice', async () => {
    const file = temp.file('connect.db')
    const connection = connectSqlite(file, {
      prefix: 'app_',
      clock: () => new Date(5_000),
      busyTimeoutMs: 250,
    })
    expect(connection.client).toBeInstanceOf(Database)
    expect(connection.client.pragma('busy_timeout', { simple: true })).toBe(250)
    await connection.store.migrate()
    const db = connection.client
    db.exec('BEGIN IMMEDIATE')
    await connection.store.outbox.findOrCreate(event('in-tx'), { tx: db })
    db.exec('COMMIT')
    expect(await connection.serverVersion()).toMatch(/^SQLite \d+\.\d+\.\d+$/)
    expect(connection.lastConnectionError()).toBeUndefined()
    await connection.close()
    await connection.close()
    expect(db.open).toBe(false)

    // What it wrote is in the file, under the prefix, at the injected clock's time.
    const check = new Database(file, { readonly: true })
    expect(check.prepare('SELECT event_id, enqueued_at FROM app_outbox').raw().all()).toEqual([
      ['in-tx', 5_000],
    ])
    check.close()
    const reopened = connectSqlite(file, { prefix: 'app_' })
    expect((await reopened.store.outbox.claim({ workerId: 'w', ...LEASE })).map((e) => e.eventId)).toEqual([
      'in-tx',
    ])
    await reopened.close()
  })

  it('passes maxEventBytes to the store', () => {
    const connection = connectSqlite(':memory:', { maxEventBytes: 2048 })
    expect(connection.store.capabilities.maxEventBytes).toBe(2048)
    expect(connection.store.outbox.maxEventBytes).toBe(2048)
    return connection.close()
  })

  it('refuses a URL, an empty path and a file it cannot open, as configuration that can never work', () => {
    expect(() => connectSqlite('sqlite:///tmp/app.db')).toThrow(
      /^\[txbox\] \[sqlite\] "sqlite:\/\/\/tmp\/app.db" is a URL, but SQLite takes the path/,
    )
    expect(() => connectSqlite('  ')).toThrow(ValidationError)
    const missingDirectory = temp.file('no-such-directory/app.db')
    const error = (() => {
      try {
        connectSqlite(missingDirectory)
      } catch (caught) {
        return caught
      }
    })()
    expect(error).toBeInstanceOf(ValidationError)
    expect((error as Error).message).toContain(
      `cannot open the database file ${JSON.stringify(missingDirectory)}`,
    )
    expect((error as Error).cause).toBeInstanceOf(Error)
  })

  it('refuses a prefix that is not an identifier', () => {
    expect(() => connectSqlite(temp.file('bad-prefix.db'), { prefix: 'x; DROP TABLE y' })).toThrow(
      ValidationError,
    )
  })

  it('after close, serverVersion fails as an unavailable StorageError', async () => {
    const connection = connectSqlite(':memory:')
    await connection.close()
    const error = await connection.serverVersion().catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(StorageError)
    expect(error).toMatchObject({ reason: 'unavailable', operation: 'serverVersion' })
  })
})
