import { describeHandle, ValidationError } from '@txbox/core'
import type { ClientBase } from 'pg'
import { ADAPTER } from './errors.js'

/**
 * Marks a {@link PostgresQueryHandle}. `Symbol.for`, so a handle built by the CommonJS copy of
 * this package is recognised by the ES module copy (an app can load both).
 */
export const POSTGRES_QUERY_HANDLE: unique symbol = Symbol.for('@txbox/postgres/query-handle') as never

/** One statement of the store: `$1`-style parameters; `name` when it may be prepared under a name. */
export interface PostgresStatement {
  readonly text: string
  readonly values: readonly unknown[]
  readonly name?: string | undefined
}

/**
 * What a statement answered. Through a caller's transaction the store reads `rows` only (each
 * of its statements there returns a row per row it touched), so a driver that cannot tell a
 * row count may answer `null`.
 */
export interface PostgresRows<R> {
  readonly rows: R[]
  readonly rowCount: number | null
}

/**
 * The one shape the repositories run a caller's transaction through, whatever produced it:
 * a pg client (`{ tx: client }`), or one of the integrations (`@txbox/postgres/knex`,
 * `/kysely`, `/drizzle`, `/postgres-js`, `/typeorm`, `/sequelize`, `/mikro-orm`, `/prisma`).
 * Build one with {@link postgresQueryHandle} to plug in another driver.
 */
export interface PostgresQueryHandle {
  readonly [POSTGRES_QUERY_HANDLE]: true
  /** What was passed, for error messages: "a Knex transaction". */
  readonly description: string
  /**
   * An object that lives as long as the transaction's connection (the pg client, the ORM's
   * transaction object): the store asks the server which database it is connected to once per
   * `session`, not once per statement.
   */
  readonly session: object
  /**
   * True when the driver cannot tell whether its transaction has ended (postgres.js, Kysely,
   * Prisma): the store then asks the server whether the connection is inside a transaction
   * block before each write, one extra round trip.
   */
  readonly checkOpenOnServer: boolean
  /** Throws a ValidationError when the transaction is known not to be open; called before any I/O. */
  assertOpen(): void
  /** Runs one statement inside the transaction. */
  query<R>(statement: PostgresStatement): Promise<PostgresRows<R>>
}

/** What {@link postgresQueryHandle} needs. */
export interface PostgresQueryHandleSpec {
  readonly description: string
  readonly session: object
  readonly checkOpenOnServer?: boolean | undefined
  readonly assertOpen?: (() => void) | undefined
  readonly query: <R>(statement: PostgresStatement) => Promise<PostgresRows<R>>
}

/** Builds a handle the store accepts as `{ tx }`. */
export const postgresQueryHandle = (spec: PostgresQueryHandleSpec): PostgresQueryHandle => {
  const given = (spec ?? {}) as Partial<Record<keyof PostgresQueryHandleSpec, unknown>>
  const problem =
    typeof spec !== 'object' || spec === null
      ? `a spec object; got ${describeHandle(spec)}`
      : typeof given.description !== 'string' || given.description === ''
        ? 'a non-empty `description` (what the handle wraps, for error messages)'
        : (typeof given.session !== 'object' && typeof given.session !== 'function') || given.session === null
          ? "a `session` object (the connection or the ORM's transaction object)"
          : typeof given.query !== 'function'
            ? 'a `query(statement)` function'
            : given.assertOpen !== undefined && typeof given.assertOpen !== 'function'
              ? '`assertOpen`, when given, to be a function'
              : undefined
  if (problem !== undefined) throw new ValidationError(ADAPTER, `postgresQueryHandle needs ${problem}`)
  return {
    [POSTGRES_QUERY_HANDLE]: true,
    description: spec.description,
    session: spec.session,
    checkOpenOnServer: spec.checkOpenOnServer ?? false,
    assertOpen: spec.assertOpen ?? (() => undefined),
    query: spec.query,
  }
}

export const isPostgresQueryHandle = (value: unknown): value is PostgresQueryHandle =>
  typeof value === 'object' &&
  value !== null &&
  (value as PostgresQueryHandle)[POSTGRES_QUERY_HANDLE] === true

/** A ValidationError for an integration that was handed something else. */
export const wrongHandle = (integration: string, expected: string, given: unknown): ValidationError =>
  new ValidationError(
    ADAPTER,
    `${integration} expects ${expected}; got ${describeHandle(given)}. Pass the transaction object your callback receives`,
  )

/**
 * True for a pg `Client`/`PoolClient` (not a Pool). `getTransactionStatus` is recent (pg 8.20 lacks
 * it, 8.23 has it; ORMs may bring an older pg of their own), so the client is recognised by the
 * connection parameters every pg 8 client carries.
 */
export const isPgClient = (value: unknown): value is ClientBase =>
  typeof value === 'object' &&
  value !== null &&
  typeof (value as ClientBase).query === 'function' &&
  (typeof (value as ClientBase).getTransactionStatus === 'function' ||
    (typeof (value as { connectionParameters?: unknown }).connectionParameters === 'object' &&
      !('totalCount' in value)))

/**
 * A pg client as a handle, checked for an open transaction before each statement: pg tracks
 * the server's transaction status ('I' idle, 'T' in a transaction, 'E' failed), so a client
 * outside BEGIN (never begun, or committed and given back) is refused instead of autocommitting.
 * A pg without `getTransactionStatus` (8.20 and older) does not say: the server is asked instead.
 * `owner` names where the client came from in the messages ("a Knex transaction's connection").
 */
export const pgClientHandle = (
  client: ClientBase,
  owner = 'tx',
  assertOwnerOpen: () => void = () => undefined,
): PostgresQueryHandle =>
  postgresQueryHandle({
    description: owner === 'tx' ? 'a pg client' : owner,
    session: client,
    checkOpenOnServer: typeof client.getTransactionStatus !== 'function',
    assertOpen: () => {
      assertOwnerOpen()
      if (client.getTransactionStatus?.() === 'I') {
        throw new ValidationError(
          ADAPTER,
          owner === 'tx'
            ? 'tx is not inside a transaction: run BEGIN on the client first'
            : `${owner} is not inside a transaction (never begun, or already committed or rolled back)`,
        )
      }
    },
    query: async <R>(statement: PostgresStatement) => {
      const config =
        statement.name === undefined
          ? { text: statement.text, values: [...statement.values] }
          : { name: statement.name, text: statement.text, values: [...statement.values] }
      const result = await client.query(config)
      return { rows: result.rows as R[], rowCount: result.rowCount }
    },
  })

/**
 * A handle over the pg client an ORM hands out for its transaction on demand (Knex's
 * `acquireConnection`, TypeORM's `QueryRunner.connect`): each statement asks for it, checks
 * it is a pg client and that the ORM's transaction and the client's are open, then runs on it.
 */
export const pinnedConnectionHandle = (spec: {
  readonly description: string
  readonly session: object
  readonly connection: () => Promise<unknown>
  readonly assertOpen: () => void
}): PostgresQueryHandle =>
  postgresQueryHandle({
    description: spec.description,
    session: spec.session,
    assertOpen: spec.assertOpen,
    query: async (statement) => {
      const connection = await spec.connection()
      if (!isPgClient(connection))
        throw new ValidationError(ADAPTER, `${spec.description} did not hand out a pg connection`)
      const handle = pgClientHandle(connection, spec.description, spec.assertOpen)
      handle.assertOpen()
      return handle.query(statement)
    },
  })
