import { describeHandle, ValidationError } from '@txbox/core'
import type { Knex } from 'knex'
import { ADAPTER } from '../errors.js'
import type { SqliteDatabase } from '../sqlite-options.js'
import { isBetterSqliteDatabase, openTransactionOn } from './handles.js'

interface KnexClientLike {
  readonly driverName?: unknown
  readonly transacting?: unknown
  readonly pool?: { readonly min?: unknown; readonly max?: unknown } | undefined
  acquireConnection(): Promise<unknown>
  releaseConnection(connection: unknown): Promise<unknown>
}

const knexClient = (value: unknown, expected: string): KnexClientLike => {
  const client =
    typeof value === 'function' ? (value as { client?: Partial<KnexClientLike> }).client : undefined
  if (client === undefined || typeof client.acquireConnection !== 'function') {
    throw new ValidationError(ADAPTER, `expected ${expected}; got ${describeHandle(value)}`)
  }
  if (client.driverName !== 'better-sqlite3') {
    throw new ValidationError(
      ADAPTER,
      `expected ${expected} on the better-sqlite3 client (knex({ client: 'better-sqlite3' })); got a Knex on ${String(client.driverName)}`,
    )
  }
  return client as KnexClientLike
}

/**
 * The better-sqlite3 `Database` under an open Knex transaction, to pass as `{ tx }`:
 * `store.outbox.findOrCreate(event, { tx: await knexTransaction(trx) })`. Refuses anything
 * but a Knex transaction on the better-sqlite3 client, and one that has ended. The store
 * then checks that it is its own connection (create it with {@link knexDatabase}).
 */
export const knexTransaction = async (trx: Knex.Transaction): Promise<SqliteDatabase> => {
  const expected = 'a Knex transaction (the trx of knex.transaction(...))'
  const handle: unknown = trx
  const marks = (typeof handle === 'function' ? handle : {}) as {
    isTransaction?: unknown
    isCompleted?: unknown
  }
  if (typeof handle !== 'function' || marks.isTransaction !== true) {
    throw new ValidationError(ADAPTER, `expected ${expected}; got ${describeHandle(trx)}`)
  }
  const client = knexClient(trx, expected)
  if (typeof marks.isCompleted === 'function' && marks.isCompleted() === true) {
    throw new ValidationError(
      ADAPTER,
      'the Knex transaction has already been committed or rolled back: call txbox inside its callback',
    )
  }
  // A transaction's client hands out the transaction's own connection, and never releases it.
  const connection = await client.acquireConnection()
  if (!isBetterSqliteDatabase(connection)) {
    throw new ValidationError(
      ADAPTER,
      `the Knex transaction's connection is ${describeHandle(connection)}, not a better-sqlite3 Database`,
    )
  }
  return openTransactionOn(connection, 'the Knex transaction')
}

/**
 * The one better-sqlite3 `Database` a Knex instance on the better-sqlite3 client holds
 * (its pool has a single connection by default), to create the store on:
 * `createSqliteStore({ db: await knexDatabase(knex) })`. Knex then runs your queries and
 * txbox its statements on the same connection, so a Knex transaction can include an enqueue.
 */
export const knexDatabase = async (knex: Knex): Promise<SqliteDatabase> => {
  const client = knexClient(knex, 'a Knex instance (knex({ client: "better-sqlite3", ... }))')
  if (client.transacting === true) {
    throw new ValidationError(
      ADAPTER,
      'knexDatabase needs the Knex instance, not a transaction: use knexTransaction(trx) for { tx }',
    )
  }
  const { min, max } = client.pool ?? {}
  if (min !== 1 || max !== 1) {
    throw new ValidationError(
      ADAPTER,
      `the Knex pool must keep exactly one connection (pool min 1 and max 1, Knex's default for SQLite); got min ${String(min)}, max ${String(max)}: another connection could not join the first one's transactions, and an idle one closed by the pool would close the store's`,
    )
  }
  const connection = await client.acquireConnection()
  await client.releaseConnection(connection)
  if (!isBetterSqliteDatabase(connection)) {
    throw new ValidationError(
      ADAPTER,
      `the Knex connection is ${describeHandle(connection)}, not a better-sqlite3 Database`,
    )
  }
  return connection
}
