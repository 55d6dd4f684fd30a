import {
  type AmbientTransactions,
  type Clock,
  describeHandle,
  type InboxRepositorySettings,
  ValidationError,
} from '@txbox/core'
import type { Statement } from 'better-sqlite3'
import { registerConnection } from './connection-identity.js'
import type { ConnectionTurns } from './connection-turns.js'
import { ADAPTER, classifySqliteError } from './errors.js'
import { SQLITE_SWEEP_BATCH, type SqliteDatabase } from './sqlite-options.js'

/** How a prepared statement answers each row: an object by column name, an array, or its first value. */
type RowShape = 'objects' | 'arrays' | 'firstColumn'

/**
 * How a repository runs its SQL: its prepared statements and its transactions on the
 * connection. better-sqlite3 is synchronous, so each primitive does all of its statements
 * in one synchronous step; no other statement of this process can run in between.
 */
export class SqliteClient<Name extends string> {
  readonly db: SqliteDatabase
  readonly #sql: Readonly<Record<Name, string>>
  /** The prepared statements, by how they answer rows (see {@link RowShape}) and name. */
  readonly #statements: Record<RowShape, Map<Name, Statement<unknown[], unknown>>> = {
    objects: new Map(),
    arrays: new Map(),
    firstColumn: new Map(),
  }
  readonly #transaction: ReturnType<SqliteDatabase['transaction']>
  readonly #turns: ConnectionTurns | undefined

  constructor(db: SqliteDatabase, sql: Readonly<Record<Name, string>>, turns?: ConnectionTurns) {
    this.db = db
    this.#sql = sql
    this.#turns = turns
    this.#transaction = db.transaction((work: () => unknown) => work())
    // A closed connection fails at its first statement, classified like every driver error.
    if (db.open) registerConnection(db)
  }

  /**
   * The prepared statement, prepared on first use (so a repository can be built before
   * `migrate()`), answering each row as an object keyed by column name. Integers are read as
   * numbers even if the caller turned on `defaultSafeIntegers`: every integer the adapter
   * stores is a safe integer.
   */
  statement<Row = unknown>(name: Name): Statement<unknown[], Row> {
    return this.#prepared(name, 'objects') as Statement<unknown[], Row>
  }

  /**
   * The statement answering each row as an array of its values in column order: better-sqlite3
   * builds an array much more cheaply than an object with a property per column, which
   * shows on statements that return many rows of many columns (the claim).
   */
  arrays<Row extends readonly unknown[]>(name: Name): Statement<unknown[], Row> {
    return this.#prepared(name, 'arrays') as Statement<unknown[], Row>
  }

  /** The statement answering each row as the value of its first column (ids from RETURNING). */
  firstColumn<Value>(name: Name): Statement<unknown[], Value> {
    return this.#prepared(name, 'firstColumn') as Statement<unknown[], Value>
  }

  #prepared(name: Name, shape: RowShape): Statement<unknown[], unknown> {
    const prepared = this.#statements[shape]
    let statement = prepared.get(name)
    if (statement === undefined) {
      statement = this.db.prepare<unknown[], unknown>(this.#sql[name]).safeIntegers(false)
      if (shape === 'arrays') statement.raw(true)
      else if (shape === 'firstColumn') statement.pluck(true)
      prepared.set(name, statement)
    }
    return statement
  }

  /**
   * Runs `work` atomically. Outside a transaction: `BEGIN IMMEDIATE`, which takes SQLite's
   * single write lock before the first read, so what `work` reads cannot change under it
   * in another connection or process (it waits up to the connection's busy timeout for
   * the lock). Inside a transaction already open on this connection (the caller's): a
   * SAVEPOINT, so the work joins that transaction instead of failing on a nested BEGIN,
   * and is undone alone if it throws. better-sqlite3's transaction functions make exactly
   * this choice from `db.inTransaction`.
   */
  atomic<T>(work: () => T): T {
    return this.#transaction.immediate(work) as T
  }

  /**
   * Runs one repository operation in its turn on the connection: a store's operations wait
   * while a `store.transaction` of another async context holds it (see ConnectionTurns).
   * A repository built alone, without a store, has no `store.transaction` to wait for.
   */
  exclusive<T>(run: () => Promise<T>): Promise<T> {
    return this.#turns === undefined ? run() : this.#turns.exclusive(run)
  }

  /**
   * Checks a `{ tx }` handle (the kernel's `transaction` setting): it must be this very
   * connection, because a write can only join a transaction open on the connection that
   * runs it; and the transaction open on it must be the caller's, not a `store.transaction`
   * of another async context.
   */
  readonly joinable = (tx: SqliteDatabase | undefined): SqliteDatabase | undefined => {
    if (tx !== undefined && tx !== this.db) {
      throw new ValidationError(
        ADAPTER,
        `tx must be the better-sqlite3 Database this store was created with: a different connection cannot join its transaction (got ${describeHandle(tx)})`,
      )
    }
    if (tx !== undefined && this.#turns?.transactionOpen === true && !this.#turns.holdsTransaction()) {
      throw new ValidationError(
        ADAPTER,
        'tx is this connection, but the transaction open on it is a store.transaction() of another async context, not yours: write inside that store.transaction(), or after it ends',
      )
    }
    // Without an open transaction the write would autocommit: a tx kept after its
    // store.transaction (or the caller's own BEGIN) ended is refused as on every store.
    if (tx !== undefined && !tx.inTransaction) {
      throw new ValidationError(
        ADAPTER,
        'tx is this connection, but no transaction is open on it (never begun, or already committed or rolled back): write inside the transaction, or leave tx out to autocommit',
      )
    }
    return tx
  }
}

/** What a store shares with both of its repositories: its `store.transaction` and the turns on the connection. */
export interface SqliteStoreShared {
  readonly ambient: AmbientTransactions<SqliteDatabase>
  readonly turns: ConnectionTurns
}

/** What both repositories tell their kernel: the adapter, its classify, this connection as `{ tx }`. */
export const repositorySettings = (
  client: SqliteClient<string>,
  clock: Clock,
  shared: SqliteStoreShared | undefined,
): InboxRepositorySettings<SqliteDatabase> => ({
  adapter: ADAPTER,
  clock,
  classify: classifySqliteError,
  transaction: client.joinable,
  sweepBatch: SQLITE_SWEEP_BATCH,
  ambient: shared?.ambient,
})
