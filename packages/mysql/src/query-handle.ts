import { describeHandle, ValidationError } from '@txbox/core'
import type { Connection, Pool } from 'mysql2/promise'
import { ADAPTER } from './errors.js'
import { begunByTxbox } from './transaction-driver.js'

/** The `kind` of every {@link MySqlQueryHandle}: a string, so two copies of the package agree. */
const QUERY_HANDLE = 'txbox-mysql-query-handle'

/**
 * What txbox's statements run on inside the caller's transaction: mysql2/promise's `execute`
 * and `query`. A mysql2 connection is one; an integration whose ORM hides its connection
 * (Prisma) answers them through the ORM's raw-SQL API, in mysql2's result shapes.
 */
export type StatementTarget = Pick<Connection, 'execute' | 'query'>

/** The caller's connection as a handle finds it. */
export interface HandleConnection {
  /** Where the statements run: a mysql2/promise connection inside the caller's transaction. */
  readonly connection: StatementTarget
  /**
   * What the server and database this connection writes to are remembered by (default: the
   * mysql2 core connection under `connection`, i.e. the physical connection).
   */
  readonly session?: object | undefined
  /**
   * True when the integration knows the transaction is open (its ORM's own state, or a
   * transaction txbox began); false makes the adapter ask the server before its first write.
   */
  readonly open: boolean
}

/**
 * The one thing the repositories run a caller's transactional statements on. A mysql2
 * connection, `store.transaction`'s connection and every ORM integration
 * (`@txbox/mysql/knex`, `/kysely`, `/drizzle`, `/typeorm`, `/sequelize`) become one, so the
 * repositories know nothing about ORMs: they run their own prepared statements on the
 * mysql2 connection underneath, inside the caller's transaction.
 */
export interface MySqlQueryHandle {
  readonly kind: typeof QUERY_HANDLE
  /** What the caller passed, as errors name it: `a Knex transaction`. */
  readonly source: string
  /**
   * The connection of the caller's transaction. `pool` is the store's pool, for integrations
   * that can only find the connection there. Throws a ValidationError when the ORM says the
   * transaction has ended.
   */
  connect(pool: Pool): Promise<HandleConnection>
}

/** What `{ tx }` accepts: a mysql2/promise connection inside a transaction, or an integration's handle. */
export type MySqlTransaction = Connection | MySqlQueryHandle

/** Builds a handle (for an integration the package does not ship: see the README). */
export const mySqlQueryHandle = (
  source: string,
  connect: (pool: Pool) => Promise<HandleConnection>,
): MySqlQueryHandle => ({ kind: QUERY_HANDLE, source, connect })

export const isMySqlQueryHandle = (value: unknown): value is MySqlQueryHandle =>
  typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === QUERY_HANDLE

type Probe = Record<string, unknown>
const has = (value: Probe, ...keys: string[]): boolean => keys.every((key) => key in value)
const fn = (value: Probe, key: string): boolean => typeof value[key] === 'function'

/** A mysql2/promise connection (`pool.getConnection()`, `createConnection`). */
const isPromiseConnection = (value: Probe): boolean =>
  fn(value, 'execute') &&
  fn(value, 'beginTransaction') &&
  typeof value.connection === 'object' &&
  value.connection !== null &&
  fn(value.connection as Probe, 'promise')

/** A mysql2 callback-API connection: `.promise()` gives the same connection with promises. */
const isCallbackConnection = (value: Probe): boolean =>
  fn(value, 'promise') && fn(value, 'execute') && 'threadId' in value && !fn(value, 'getConnection')

const isMySql2Pool = (value: Probe): boolean =>
  fn(value, 'getConnection') && (has(value, 'pool') || has(value, '_allConnections'))

/**
 * Handles of other libraries that `{ tx }` gets by mistake, and what to pass instead. Each
 * test is structural: the adapter imports no ORM.
 */
const KNOWN_HANDLES: readonly (readonly [test: (value: Probe) => boolean, what: string, instead: string])[] =
  [
    [
      (v) => v.isTransaction === true && fn(v, 'isCompleted'),
      'a Knex transaction',
      "wrap it: { tx: knexTransaction(trx) } from '@txbox/mysql/knex'",
    ],
    [
      (v) => fn(v, 'transaction') && fn(v, 'raw') && has(v, 'client'),
      'a Knex instance',
      "pass a transaction: knex.transaction(async (trx) => ... { tx: knexTransaction(trx) }) from '@txbox/mysql/knex'",
    ],
    [
      (v) => fn(v, 'selectFrom') && v.isTransaction === true,
      'a Kysely transaction',
      "wrap it: { tx: kyselyTransaction(trx) } from '@txbox/mysql/kysely'",
    ],
    [
      (v) => fn(v, 'selectFrom') && fn(v, 'transaction'),
      'a Kysely instance',
      "pass a transaction: db.transaction().execute(async (trx) => ... { tx: kyselyTransaction(trx) }) from '@txbox/mysql/kysely'",
    ],
    [
      (v) => has(v, 'session', 'dialect') && fn(v, 'transaction') && fn(v, 'select'),
      'a Drizzle database or transaction',
      "wrap the transaction: db.transaction(async (tx) => ... { tx: drizzleTransaction(tx) }) from '@txbox/mysql/drizzle'",
    ],
    [
      (v) => has(v, 'queryRunner') && fn(v, 'getRepository'),
      'a TypeORM EntityManager',
      "wrap it: { tx: typeormTransaction(manager) } from '@txbox/mysql/typeorm'",
    ],
    [
      (v) => has(v, 'isTransactionActive') && fn(v, 'startTransaction'),
      'a TypeORM QueryRunner',
      "wrap it: { tx: typeormTransaction(queryRunner) } from '@txbox/mysql/typeorm'",
    ],
    [
      (v) => has(v, 'sequelize') && fn(v, 'commit') && fn(v, 'rollback'),
      'a Sequelize transaction',
      "wrap it: { tx: sequelizeTransaction(t) } from '@txbox/mysql/sequelize'",
    ],
    [
      (v) => fn(v, '$queryRawUnsafe'),
      'a Prisma client or transaction',
      "wrap the transaction: prisma.$transaction(async (tx) => ... { tx: prismaTransaction(tx) }) from '@txbox/mysql/prisma'",
    ],
    [
      (v) => fn(v, 'getTransactionStatus') || (fn(v, 'begin') && fn(v, 'unsafe')),
      'a PostgreSQL client',
      'this store is MySQL / MariaDB: pass a connection of its mysql2 pool',
    ],
  ]

const EXPECTED =
  'a mysql2/promise connection inside a transaction (await pool.getConnection(), then beginTransaction()), ' +
  "store.transaction's connection, or an integration's handle (knexTransaction(trx) from '@txbox/mysql/knex', ...)"

const invalid = (message: string): never => {
  throw new ValidationError(ADAPTER, message)
}

/**
 * Checks a `{ tx }` before any I/O and answers it as a handle: a mysql2 connection becomes
 * one, an integration's handle stays as it is, anything else is a ValidationError naming
 * what was passed and what is expected. Whether the transaction is open, and on the store's
 * database, is checked before the first write (`openConnection`): it may need the server.
 */
export const toQueryHandle = (tx: unknown): MySqlQueryHandle => {
  if (isMySqlQueryHandle(tx)) return tx
  if ((typeof tx !== 'object' && typeof tx !== 'function') || tx === null)
    return invalid(`tx must be ${EXPECTED}; got ${describeHandle(tx)}`)
  const value = tx as Probe
  if (isPromiseConnection(value)) {
    const connection = tx as Connection
    return mySqlQueryHandle(`the mysql2 connection (thread ${connection.threadId})`, async () => ({
      connection,
      open: begunByTxbox(connection),
    }))
  }
  if (isCallbackConnection(value)) return toQueryHandle((value.promise as () => unknown).call(tx))
  if (isMySql2Pool(value))
    return invalid(
      `tx is the mysql2 Pool itself, whose statements autocommit outside your transaction; pass the connection of the transaction instead: ${EXPECTED}`,
    )
  for (const [test, what, instead] of KNOWN_HANDLES) {
    if (test(value)) return invalid(`tx is ${what}, not a mysql2 connection: ${instead}`)
  }
  return invalid(`tx must be ${EXPECTED}; got ${describeHandle(tx)}`)
}
