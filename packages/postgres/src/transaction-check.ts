import { ValidationError } from '@txbox/core'
import type { Pool } from 'pg'
import { ADAPTER } from './errors.js'
import type { PostgresQueryHandle } from './query-handle.js'

/**
 * Which database a connection is on: its name and the start time of its server's postmaster
 * (two servers never share one to the microsecond), and whether the statement runs inside a
 * transaction block: inside BEGIN, now() is the transaction's start and a later statement's
 * statement_timestamp() differs from it; in autocommit both are the statement's own start.
 */
const PROBE = `SELECT current_database() AS database, pg_postmaster_start_time()::text AS started,
  now() <> statement_timestamp() AS in_transaction`

interface ProbeRow {
  database: string
  started: string
  in_transaction: boolean
}

const identity = (row: ProbeRow | undefined): string =>
  row === undefined
    ? 'an unknown database'
    : `database ${JSON.stringify(row.database)} (server started ${row.started})`

/** The identity of each store pool's database, once asked. */
const poolIdentities = new WeakMap<Pool, Promise<string>>()
/** Sessions (connections) already found on the store's database, per pool. */
const verifiedSessions = new WeakMap<Pool, WeakSet<object>>()

/** pg-pool's own bookkeeping (stable since pg-pool 2, not in its typings). */
interface PoolInternals {
  readonly _clients?: readonly object[]
  readonly options?: { readonly max?: number }
  readonly Client?: new (config: unknown) => { readonly database?: string }
}

/** True when `client` is a connection of `pool` itself: on the pool's database by construction. */
const isClientOf = (pool: Pool, client: object): boolean =>
  (pool as unknown as PoolInternals)._clients?.includes(client) === true

/**
 * True when the pool hands out a client without waiting. The probe of the store's own
 * database must never wait for one: the caller may hold clients of that very pool in its
 * transactions (a Kysely or Drizzle built on the store's pool), and would wait for itself.
 */
const canServeNow = (pool: Pool): boolean =>
  pool.idleCount > 0 || pool.totalCount < ((pool as unknown as PoolInternals).options?.max ?? 10)

/** The database the pool's configuration names (pg's defaults applied), without connecting. */
const configuredDatabase = (pool: Pool): string | undefined => {
  const Client = (pool as unknown as PoolInternals).Client
  if (Client === undefined) return undefined
  try {
    return new Client((pool as unknown as { options: unknown }).options).database
  } catch {
    return undefined
  }
}

/**
 * The store's database as the server names it; when it is not known yet and the pool cannot
 * serve at once, the database the pool's configuration names (its server cannot be told then).
 */
const expectedIdentity = async (
  pool: Pool,
): Promise<{ readonly full: string } | { readonly database: string } | undefined> => {
  let known = poolIdentities.get(pool)
  if (known === undefined && canServeNow(pool)) {
    known = pool.query<ProbeRow>(PROBE).then((result) => identity(result.rows[0]))
    // A failed probe (server down) is asked again next time instead of being remembered.
    known.catch(() => poolIdentities.delete(pool))
    poolIdentities.set(pool, known)
  }
  if (known !== undefined) return { full: await known }
  const database = configuredDatabase(pool)
  return database === undefined ? undefined : { database }
}

const sessionsOf = (pool: Pool): WeakSet<object> => {
  let sessions = verifiedSessions.get(pool)
  if (sessions === undefined) {
    sessions = new WeakSet()
    verifiedSessions.set(pool, sessions)
  }
  return sessions
}

/** A connection the store took from its own pool (store.transaction) needs no probe. */
export const trustSession = (pool: Pool, session: object): void => {
  sessionsOf(pool).add(session)
}

/**
 * Refuses, before the store writes through `handle`, a transaction on another database than
 * the store's pool (the event would commit there, or fail on a missing table), and, for a
 * driver that cannot tell, a handle whose transaction has ended (the write would autocommit).
 */
export const checkTransactionTarget = async (pool: Pool, handle: PostgresQueryHandle): Promise<void> => {
  const sessions = sessionsOf(pool)
  if (!handle.checkOpenOnServer && (sessions.has(handle.session) || isClientOf(pool, handle.session))) return
  const probe = await handle.query<ProbeRow>({ text: PROBE, values: [] })
  const row = probe.rows[0]
  const actual = identity(row)
  const expected = await expectedIdentity(pool)
  const matches =
    expected === undefined ||
    ('full' in expected ? actual === expected.full : row?.database === expected.database)
  if (!matches) {
    const store =
      expected === undefined
        ? ''
        : 'full' in expected
          ? expected.full
          : `database ${JSON.stringify(expected.database)}`
    throw new ValidationError(
      ADAPTER,
      `tx (${handle.description}) is connected to ${actual}, but the store's pool is connected to ${store}: ` +
        'pass a transaction on the same database as the store',
    )
  }
  if (row?.in_transaction !== true) {
    throw new ValidationError(
      ADAPTER,
      `tx (${handle.description}) is not inside a transaction (never begun, or already committed or rolled back): ` +
        'use it only inside its transaction callback',
    )
  }
  // Only a full match is remembered: a name-only match is checked again once the server can be asked.
  if (expected === undefined || 'full' in expected) sessions.add(handle.session)
}
