import { ValidationError } from '@txbox/core'
import Database from 'better-sqlite3'
import type { Knex } from 'knex'
import { afterEach, describe, expect, it } from 'vitest'
import { drizzleDatabase } from '../src/orm/drizzle.js'
import { knexDatabase, knexTransaction } from '../src/orm/knex.js'

/**
 * What the ORM integrations refuse, one wrong input at a time, with what each message names.
 * The Knex and Drizzle objects here are shaped by hand (the members each check reads), so
 * every branch is reached: a real Knex or Drizzle never builds most of these states.
 */

const open: Database.Database[] = []
afterEach(() => {
  for (const db of open.splice(0)) if (db.open) db.close()
})
const database = (): Database.Database => {
  const db = new Database(':memory:')
  open.push(db)
  return db
}

/** A Knex-shaped function (Knex instances and transactions are functions) around `client`. */
const knexLike = (client: unknown, marks: Record<string, unknown> = {}): Knex =>
  Object.assign(() => undefined, { client, ...marks }) as unknown as Knex

/** A Knex client on better-sqlite3 that hands out `connection`. */
const clientOf = (connection: unknown, extra: Record<string, unknown> = {}) => ({
  driverName: 'better-sqlite3',
  pool: { min: 1, max: 1 },
  acquireConnection: async () => connection,
  releaseConnection: async () => undefined,
  ...extra,
})

/** A Knex transaction-shaped function whose client hands out `connection`. */
const trxOf = (connection: unknown, completed = false): Knex.Transaction =>
  knexLike(clientOf(connection), {
    isTransaction: true,
    isCompleted: () => completed,
  }) as unknown as Knex.Transaction

const refusal = async (action: () => unknown): Promise<string> => {
  try {
    await action()
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError)
    return (error as Error).message
  }
  throw new Error('expected a ValidationError, but it resolved')
}

/** Objects that are almost a better-sqlite3 Database: one member missing or of the wrong type each. */
const almostDatabases = (): [string, unknown][] => {
  const db = database()
  const members = {
    prepare: db.prepare.bind(db),
    pragma: db.pragma.bind(db),
    inTransaction: false,
    open: true,
  }
  return [
    ['null', null],
    ['a string', 'db'],
    ...(['prepare', 'pragma', 'inTransaction', 'open'] as const).map((member): [string, unknown] => [
      `without ${member}`,
      { ...members, [member]: member === 'inTransaction' || member === 'open' ? 'yes' : true },
    ]),
  ]
}

describe('knexTransaction', () => {
  it('refuses what is not a Knex transaction, a Knex on another driver, and a client without connections', async () => {
    expect(await refusal(() => knexTransaction({} as Knex.Transaction))).toMatch(
      /^\[txbox\] \[sqlite\] expected a Knex transaction \(the trx of knex\.transaction\(\.\.\.\)\); got a plain object$/,
    )
    expect(await refusal(() => knexTransaction(knexLike(clientOf(null)) as Knex.Transaction))).toMatch(
      /expected a Knex transaction .*; got a function$/,
    )
    expect(
      await refusal(() => knexTransaction(knexLike(undefined, { isTransaction: true }) as Knex.Transaction)),
    ).toMatch(/^\[txbox\] \[sqlite\] expected a Knex transaction .*; got a function$/)
    expect(
      await refusal(() =>
        knexTransaction(
          knexLike({ driverName: 'better-sqlite3' }, { isTransaction: true }) as Knex.Transaction,
        ),
      ),
    ).toMatch(/expected a Knex transaction .*; got a function$/)
    expect(
      await refusal(() =>
        knexTransaction(
          knexLike(clientOf(null, { driverName: 'pg' }), { isTransaction: true }) as Knex.Transaction,
        ),
      ),
    ).toMatch(/on the better-sqlite3 client .*; got a Knex on pg$/)
  })

  it('refuses a completed transaction, a connection that is not a Database, a closed one and one without an open transaction', async () => {
    const db = database()
    db.exec('BEGIN')
    expect(await refusal(() => knexTransaction(trxOf(db, true)))).toMatch(
      /^\[txbox\] \[sqlite\] the Knex transaction has already been committed or rolled back/,
    )
    for (const [what, connection] of almostDatabases())
      expect(await refusal(() => knexTransaction(trxOf(connection))), what).toMatch(
        /^\[txbox\] \[sqlite\] the Knex transaction's connection is .*, not a better-sqlite3 Database$/,
      )
    db.exec('COMMIT')
    expect(await refusal(() => knexTransaction(trxOf(db)))).toMatch(
      /^\[txbox\] \[sqlite\] the Knex transaction has no open transaction on its connection \(never begun, or already committed or rolled back\)/,
    )
    db.close()
    expect(await refusal(() => knexTransaction(trxOf(db)))).toBe(
      '[txbox] [sqlite] the Knex transaction runs on a closed better-sqlite3 Database',
    )
  })

  it('answers the connection of an open transaction', async () => {
    const db = database()
    db.exec('BEGIN')
    expect(await knexTransaction(trxOf(db))).toBe(db)
    const withoutCompletedMark = knexLike(clientOf(db), { isTransaction: true }) as Knex.Transaction
    expect(await knexTransaction(withoutCompletedMark)).toBe(db)
  })
})

describe('knexDatabase', () => {
  it('refuses a transaction, a pool of more or fewer than one connection, and a connection that is not a Database', async () => {
    const db = database()
    expect(await refusal(() => knexDatabase(knexLike(clientOf(db, { transacting: true }))))).toMatch(
      /^\[txbox\] \[sqlite\] knexDatabase needs the Knex instance, not a transaction: use knexTransaction\(trx\)/,
    )
    for (const pool of [{ min: 0, max: 1 }, { min: 1, max: 2 }, { min: 2, max: 2 }, undefined])
      expect(await refusal(() => knexDatabase(knexLike(clientOf(db, { pool }))))).toMatch(
        new RegExp(
          `^\\[txbox\\] \\[sqlite\\] the Knex pool must keep exactly one connection .*; got min ${String(pool?.min)}, max ${String(pool?.max)}:`,
        ),
      )
    for (const [what, connection] of almostDatabases())
      expect(await refusal(() => knexDatabase(knexLike(clientOf(connection)))), what).toMatch(
        /^\[txbox\] \[sqlite\] the Knex connection is .*, not a better-sqlite3 Database$/,
      )
    expect(await refusal(() => knexDatabase({} as Knex))).toMatch(
      /^\[txbox\] \[sqlite\] expected a Knex instance \(knex\(\{ client: "better-sqlite3", \.\.\. \}\)\); got a plain object$/,
    )
    expect(await knexDatabase(knexLike(clientOf(db)))).toBe(db)
  })
})

describe('drizzleDatabase', () => {
  const ENTITY_KIND = Symbol.for('drizzle:entityKind')
  /** An object whose class Drizzle would name `kind`, holding `client` as its `$client`. */
  const drizzleLike = (kind: unknown, client: unknown = undefined): never => {
    class Named {
      static readonly [ENTITY_KIND] = kind
      readonly $client = client
    }
    return new Named() as never
  }

  it('names what it got: not an object, another Drizzle class, a $client that is not a Database', () => {
    const message = (value: unknown) => {
      try {
        drizzleDatabase(value as never)
      } catch (error) {
        expect(error).toBeInstanceOf(ValidationError)
        return (error as Error).message
      }
      return 'accepted'
    }
    expect(message(null)).toBe(
      '[txbox] [sqlite] expected a Drizzle instance of drizzle-orm/better-sqlite3; got null',
    )
    expect(message('orm')).toMatch(/; got a string$/)
    expect(message(drizzleLike('PgDatabase'))).toMatch(/; got a Drizzle PgDatabase$/)
    expect(message(drizzleLike(42))).toMatch(/; got a Named$/)
    expect(message(drizzleLike('BetterSQLiteTransaction'))).toMatch(
      /^\[txbox\] \[sqlite\] a Drizzle better-sqlite3 transaction is synchronous/,
    )
    for (const [what, client] of almostDatabases())
      expect(message(drizzleLike('BetterSQLite3Database', client)), what).toMatch(
        /^\[txbox\] \[sqlite\] the Drizzle instance's \$client is .*, not a better-sqlite3 Database$/,
      )
    const db = database()
    expect(drizzleDatabase(drizzleLike('BetterSQLite3Database', db))).toBe(db)
  })
})
