import type { SqliteDatabase } from './sqlite-options.js'

/**
 * The SQL function every connection a txbox SQLite repository runs on answers with its
 * number. Functions are registered per connection, so a query builder that hides its
 * connection (Kysely keeps it in a private field) can be asked which `Database` it runs on:
 * the function exists only on a connection txbox knows, and names which one.
 */
export const CONNECTION_FUNCTION = 'txbox_connection_id'

const numbers = new WeakMap<SqliteDatabase, number>()
const connections = new Map<number, WeakRef<SqliteDatabase>>()
let next = 1

/** Registers the function on `db` once (connection-local, no schema change, no write). */
export const registerConnection = (db: SqliteDatabase): void => {
  if (numbers.has(db)) return
  const id = next++
  numbers.set(db, id)
  connections.set(id, new WeakRef(db))
  db.function(CONNECTION_FUNCTION, { deterministic: true }, () => id)
}

/** The `Database` whose function answered `id`, if it is still open in this process. */
export const connectionById = (id: unknown): SqliteDatabase | undefined =>
  typeof id === 'number' ? connections.get(id)?.deref() : undefined
