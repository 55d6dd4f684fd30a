import { describeHandle, ValidationError } from '@txbox/core'
import type { BetterSQLite3Database } from 'drizzle-orm/better-sqlite3'
import { ADAPTER } from '../errors.js'
import type { SqliteDatabase } from '../sqlite-options.js'
import { isBetterSqliteDatabase } from './handles.js'

/** Drizzle names each of its classes under this symbol (what its own `is()` reads). */
const ENTITY_KIND = Symbol.for('drizzle:entityKind')

const kindOf = (value: unknown): string | undefined => {
  if (typeof value !== 'object' || value === null) return undefined
  const kind = (value.constructor as unknown as Record<symbol, unknown> | undefined)?.[ENTITY_KIND]
  return typeof kind === 'string' ? kind : undefined
}

/**
 * The better-sqlite3 `Database` under a Drizzle instance (`drizzle-orm/better-sqlite3`),
 * to create the store on: `createSqliteStore({ db: drizzleDatabase(orm) })`.
 *
 * Drizzle's better-sqlite3 `transaction()` is synchronous (better-sqlite3 refuses a
 * callback that returns a promise), so it cannot await an enqueue. Write with Drizzle
 * inside `store.transaction(async () => { orm.insert(...).run(); await store.outbox.findOrCreate(...) })`
 * instead: its statements run on the same connection, inside the transaction txbox opened.
 */
export const drizzleDatabase = <Schema extends Record<string, unknown>>(
  orm: BetterSQLite3Database<Schema>,
): SqliteDatabase => {
  const kind = kindOf(orm)
  if (kind === 'BetterSQLiteTransaction') {
    throw new ValidationError(
      ADAPTER,
      'a Drizzle better-sqlite3 transaction is synchronous and cannot await txbox: pass the Drizzle instance, and run its writes inside store.transaction(async () => ...)',
    )
  }
  if (kind !== 'BetterSQLite3Database') {
    throw new ValidationError(
      ADAPTER,
      `expected a Drizzle instance of drizzle-orm/better-sqlite3; got ${kind === undefined ? describeHandle(orm) : `a Drizzle ${kind}`}`,
    )
  }
  const client: unknown = (orm as { $client?: unknown }).$client
  if (!isBetterSqliteDatabase(client)) {
    throw new ValidationError(
      ADAPTER,
      `the Drizzle instance's $client is ${describeHandle(client)}, not a better-sqlite3 Database`,
    )
  }
  return client
}
