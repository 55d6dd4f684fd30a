import { AsyncLocalStorage } from 'node:async_hooks'
import { runStorageOperation, StorageError, utf8Bytes } from '@txbox/core'
import type { Pool, PoolConnection, ResultSetHeader, RowDataPacket } from 'mysql2/promise'
import { ADAPTER, classifyMySqlError, ER_DATA_OUT_OF_RANGE, errnoOf } from './errors.js'
import type { RetryEvent } from './mysql-options.js'
import { type MySqlTransaction, type StatementTarget, toQueryHandle } from './query-handle.js'
import {
  isConnectionOf,
  notInTransaction,
  openConnection,
  readIdentity,
  type ServerIdentity,
} from './transaction-check.js'
import { MySqlTransactionDriver } from './transaction-driver.js'

/** What a statement can run on: the pool (autocommit) or one connection (a transaction). */
export type Queryable = Pool | StatementTarget

/** A statement parameter: the adapter sends text (including DATETIMEs), integers and NULL. */
export type Param = string | number | null

/**
 * A `LIMIT ?` value. Sent as text: mysql2 releases before 3.2x bind JS numbers as DOUBLE,
 * which MySQL 8.0.22+ rejects for LIMIT ("Incorrect arguments to mysqld_stmt_execute");
 * both servers accept the integer as a string.
 */
export const limitParam = (limit: number): string => String(limit)

/** A row as the adapter reads it: every column by name. */
export type Row = RowDataPacket & Record<string, unknown>

/**
 * Per-statement options that make results independent of how the user configured the pool:
 * DATETIME as strings (parsed as UTC by us, never through the connection's time zone),
 * BIGINT as strings (no precision loss), objects not arrays.
 */
const READ_OPTIONS = {
  dateStrings: true,
  supportBigNumbers: true,
  bigNumberStrings: true,
  rowsAsArray: false,
} as const

/**
 * The same, also bypassing a global `typeCast` function of the pool, which mysql2 applies to
 * every statement without one of its own. Only for such pools: a per-statement `typeCast`
 * makes mysql2's row parser call two wrappers per column, a quarter of the CPU of reading
 * 100 rows (see docs/BENCHMARKS.md).
 */
const BYPASS_TYPE_CAST = {
  ...READ_OPTIONS,
  typeCast: (_field: unknown, next: () => unknown) => next(),
} as const

/** Whether a pool or connection's statements need {@link BYPASS_TYPE_CAST}, by the mysql2 config they run with. */
const hasGlobalTypeCast = new WeakMap<object, boolean>()

const readOptions = (db: Queryable): typeof READ_OPTIONS => {
  let bypass = hasGlobalTypeCast.get(db)
  if (bypass === undefined) {
    // A promise pool keeps its connections' config under pool.config.connectionConfig, a
    // promise connection under connection.config; where neither is found (a handle answering
    // through an ORM), the bypass is kept.
    const target = db as {
      pool?: { config?: { connectionConfig?: { typeCast?: unknown } } }
      connection?: { config?: { typeCast?: unknown } }
    }
    const config = target.pool?.config?.connectionConfig ?? target.connection?.config
    bypass = config === undefined || typeof config.typeCast === 'function'
    hasGlobalTypeCast.set(db, bypass)
  }
  return bypass ? BYPASS_TYPE_CAST : READ_OPTIONS
}

/**
 * Runs a prepared statement (binary protocol). Prepared statements send values out of band,
 * so payloads never go through client-side escaping, which would be wrong on a server with
 * `NO_BACKSLASH_ESCAPES`.
 */
export const selectRows = async (db: Queryable, sql: string, values: readonly Param[]): Promise<Row[]> => {
  const [rows] = await db.execute<Row[]>({ sql, ...readOptions(db) }, [...values])
  return rows
}

/** Runs a write and returns the server's result header. */
export const runWrite = async (
  db: Queryable,
  sql: string,
  values: readonly Param[],
): Promise<ResultSetHeader> => {
  const [result] = await db.execute<ResultSetHeader>({ sql }, [...values])
  return result
}

/**
 * How many rows an `INSERT ... ON DUPLICATE KEY UPDATE` with a no-op update of `rows` value
 * rows inserted, or undefined when the server's answer does not tell. The affected-rows
 * count alone cannot: with `CLIENT_FOUND_ROWS` (mysql2's default) a row left as it was
 * counts 1, like an inserted one, and without it 0. Both MariaDB and MySQL 8 answer a
 * one-row INSERT with the new auto-increment id, 0 when nothing was inserted; a multi-row
 * one with "Records: r  Duplicates: d  Warnings: w", whose duplicates are the rows counted
 * in the affected rows without being inserted (all of them with the flag, none without).
 * The message may be translated (`lc_messages`), so only its three numbers are read. An
 * answer without them (a handle that runs statements through an ORM) counts as "unknown".
 */
export const insertedRows = (header: ResultSetHeader, rows: number): number | undefined => {
  if (rows === 1) return Number(header.insertId) > 0 ? 1 : 0
  const numbers = typeof header.info === 'string' ? header.info.match(/\d+/g) : null
  if (numbers?.length !== 3 || Number(numbers[0]) !== rows) return undefined
  return header.affectedRows - Number(numbers[1])
}

/** What an event weighs in a statement: its text values in UTF-8. */
export const eventBytes = (event: {
  eventId: string
  subject: string
  payload: string
  headers?: string | undefined
}): number =>
  utf8Bytes(event.payload) +
  utf8Bytes(event.headers ?? '') +
  utf8Bytes(event.eventId) +
  utf8Bytes(event.subject)

/** What the adapter reads once per repository about the server and its connections. */
interface ConnectionCheck {
  readonly maxEventBytes: number
  readonly insertReturning: boolean
}

/** Room in a packet for the statement text, the other columns and the protocol framing. */
const PACKET_OVERHEAD_BYTES = 16 * 1024

/** How many times a deadlocked or timed-out autocommit step or short transaction runs in all. */
const MAX_ATTEMPTS = 5

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** 10, 20, 40, 80 ms, each scaled by a random factor in [0.5, 1.5) so retriers spread out. */
const backoffMs = (attempt: number): number => 10 * 2 ** (attempt - 1) * (0.5 + Math.random())

/**
 * The repository operation running in this async context (`outbox.claim`), for `onRetry`:
 * the kernel knows the operation, the primitive it calls does not.
 */
const currentOperation = new AsyncLocalStorage<string>()

/**
 * How the adapter's statements run. Retries, on `conflict` (deadlock 1213, lock wait timeout
 * 1205, see `classifyMySqlError`), the work the adapter owns: autocommit statements and its
 * own short transactions, each run again as a whole, at most {@link MAX_ATTEMPTS} times in
 * all with a jittered backoff of 10-80 ms, calling `onRetry` before each new attempt. Never
 * retries inside the caller's transaction: InnoDB rolled the caller's whole transaction
 * back, and only the caller can run it again. Errors are not wrapped here: the repository
 * kernel turns them into a classified `StorageError` once.
 */
export class Runner {
  readonly pool: Pool
  readonly #onRetry: ((event: RetryEvent) => void) | undefined
  /** The adapter's own short transactions: READ COMMITTED (see {@link Runner.transaction}). */
  readonly #transactions: MySqlTransactionDriver
  /** Short transactions at the session's level (see {@link Runner.atomic}). */
  readonly #sessionTransactions: MySqlTransactionDriver

  #connectionCheck: Promise<ConnectionCheck> | undefined
  /** Whether the server has `@@in_transaction` (MariaDB), once the connection check answered. */
  #inTransactionVariable = false
  #identity: Promise<ServerIdentity> | undefined

  constructor(pool: Pool, onRetry?: (event: RetryEvent) => void) {
    this.pool = pool
    this.#onRetry = onRetry
    this.#transactions = new MySqlTransactionDriver(pool, 'READ COMMITTED')
    this.#sessionTransactions = new MySqlTransactionDriver(pool)
  }

  /** Runs `run` as the repository operation `operation` (the name `onRetry` reports). */
  static inOperation<T>(operation: string, run: () => Promise<T>): Promise<T> {
    return currentOperation.run(operation, run)
  }

  /**
   * The largest event this server accepts: one statement (all its values) must fit in
   * `max_allowed_packet`, and a bigger one makes the server drop the connection (errno
   * 1153), so events are measured before they are sent. Read once per repository, with a
   * check that the pool talks utf8mb4: a utf8mb3 connection cannot carry emoji, and a
   * non-strict server would store them as '?'. `db`, a connection of the pool the caller
   * already holds (its transaction's), is asked instead of the pool: when callers' open
   * transactions hold every connection of the pool, waiting for another would never end.
   */
  async maxEventBytes(db?: Queryable): Promise<number> {
    return (await this.#check(db)).maxEventBytes
  }

  /**
   * Whether `INSERT ... ON DUPLICATE KEY UPDATE ... RETURNING` answers the rows it wrote
   * (MariaDB 10.5+; MySQL has no RETURNING): read with the connection check, no round trip
   * of its own.
   */
  async insertReturning(db?: Queryable): Promise<boolean> {
    return (await this.#check(db)).insertReturning
  }

  #check(db: Queryable | undefined): Promise<ConnectionCheck> {
    const via = db !== undefined && isConnectionOf(db, this.pool) ? db : this.pool
    this.#connectionCheck ??= runStorageOperation(
      ADAPTER,
      'connection check',
      classifyMySqlError,
      async () => {
        const rows = await selectRows(
          via,
          'SELECT @@max_allowed_packet AS bytes, @@character_set_connection AS charset, VERSION() AS version',
          [],
        )
        const charset = String(rows[0]?.charset)
        if (charset !== 'utf8mb4') {
          throw new StorageError(
            ADAPTER,
            'connection check',
            undefined,
            `the connection character set is ${charset}, not utf8mb4: create the pool with charset: 'utf8mb4_bin'`,
          )
        }
        // MariaDB says so in its version (10.5+ has RETURNING; the adapter needs 10.6 anyway).
        const mariadb = /mariadb/i.test(String(rows[0]?.version))
        this.#inTransactionVariable = mariadb
        return {
          maxEventBytes: Number(rows[0]?.bytes) - PACKET_OVERHEAD_BYTES,
          insertReturning: mariadb,
        }
      },
    ).catch((error: unknown) => {
      this.#connectionCheck = undefined
      throw error
    })
    return this.#connectionCheck
  }

  /** The server and database of the store's pool, read once (a caller's `{ tx }` must match it). */
  #storeIdentity = (): Promise<ServerIdentity> => {
    this.#identity ??= readIdentity(this.pool).catch((error: unknown) => {
      this.#identity = undefined
      throw error
    })
    return this.#identity
  }

  async #retrying<T>(run: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await run()
      } catch (error) {
        if (attempt >= MAX_ATTEMPTS || classifyMySqlError(error).reason !== 'conflict') throw error
        this.#onRetry?.({ operation: currentOperation.getStore() ?? 'unknown', attempt, error })
        await sleep(backoffMs(attempt))
      }
    }
  }

  /**
   * Autocommit statements on the pool, or, when the caller gave `{ tx }`, on its transaction's
   * connection (checked open and on the store's database first; never retried).
   */
  async write<T>(tx: MySqlTransaction | undefined, run: (db: Queryable) => Promise<T>): Promise<T> {
    if (tx === undefined) return this.#retrying(() => run(this.pool))
    return run((await openConnection(toQueryHandle(tx), this.pool, this.#storeIdentity)).connection)
  }

  /**
   * As {@link write}, but on a server known to have `@@in_transaction` (MariaDB) a caller's
   * connection whose transaction state is unknown is not asked first (`DO 0`): `run` gets
   * `guard` true and must send, as its first statement, one guarded by
   * `IN_TRANSACTION_GUARD` (sql.ts), which fails outside a transaction and writes nothing;
   * that failure is thrown as the ValidationError the question would have raised. One round
   * trip fewer per enqueue in a raw mysql2 transaction. Until the connection check has
   * answered (the store's first write), it asks.
   */
  async writeGuarded<T>(
    tx: MySqlTransaction | undefined,
    run: (db: Queryable, guard: boolean) => Promise<T>,
  ): Promise<T> {
    if (tx === undefined) return this.#retrying(() => run(this.pool, false))
    const handle = toQueryHandle(tx)
    const { connection, unchecked } = await openConnection(handle, this.pool, this.#storeIdentity, {
      deferOpenCheck: this.#inTransactionVariable,
    })
    if (!unchecked) return run(connection, false)
    try {
      return await run(connection, true)
    } catch (error) {
      if (errnoOf(error) === ER_DATA_OUT_OF_RANGE) throw notInTransaction(handle)
      throw error
    }
  }

  /** Autocommit statements on the pool, retried as a whole on conflict. */
  auto<T>(run: (db: Queryable) => Promise<T>): Promise<T> {
    return this.#retrying(() => run(this.pool))
  }

  /**
   * A short READ COMMITTED transaction on one pooled connection, committed before this
   * returns and retried as a whole on conflict. READ COMMITTED keeps InnoDB from taking gap
   * locks, and releases the locks of rows a locking read examined but did not match.
   */
  transaction<T>(run: (connection: PoolConnection) => Promise<T>): Promise<T> {
    return this.#retrying(() => this.#transactions.run(run))
  }

  /**
   * A short transaction at the session's isolation level (no `SET TRANSACTION` round trip) on
   * one pooled connection, committed before this returns and retried as a whole on conflict:
   * for the statements an enqueue runs in a caller's transaction too, at whatever level.
   */
  sessionTransaction<T>(run: (connection: PoolConnection) => Promise<T>): Promise<T> {
    return this.#retrying(() => this.#sessionTransactions.run(run))
  }

  /**
   * Writes on one pooled connection that take effect together or not at all: committed when
   * `run` answers true, rolled back when it answers false; retried as a whole on conflict.
   * At the session's isolation level (no `SET TRANSACTION` round trip), for writes by unique
   * key, whose locks are the same under READ COMMITTED and REPEATABLE READ for the rows they
   * change.
   */
  atomic(run: (connection: PoolConnection) => Promise<boolean>): Promise<boolean> {
    return this.#retrying(async () => {
      try {
        return await this.#sessionTransactions.run(async (connection) => {
          if (await run(connection)) return true
          throw new Undone()
        })
      } catch (error) {
        if (error instanceof Undone) return false
        throw error
      }
    })
  }
}

/** Thrown inside {@link Runner.atomic} to roll its transaction back; never leaves it. */
class Undone extends Error {}
