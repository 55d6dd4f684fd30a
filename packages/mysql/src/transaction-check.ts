import { ValidationError } from '@txbox/core'
import type { Connection, Pool, ResultSetHeader, RowDataPacket } from 'mysql2/promise'
import { ADAPTER } from './errors.js'
import type { MySqlQueryHandle, StatementTarget } from './query-handle.js'
import { coreConnection } from './transaction-driver.js'

/** The server and database a connection writes to (tables are named without a database). */
export interface ServerIdentity {
  readonly host: string
  readonly port: string
  readonly database: string
  readonly charset: string
}

const IDENTITY_SQL =
  'SELECT @@hostname AS host, @@port AS port, DATABASE() AS db, @@character_set_connection AS charset'

/** Reads where `db` writes: one SELECT of session variables, no lock taken, fine inside a transaction. */
export const readIdentity = async (db: Pool | StatementTarget): Promise<ServerIdentity> => {
  const [rows] = await db.query<RowDataPacket[]>(IDENTITY_SQL)
  const row: Record<string, unknown> = rows[0] ?? {}
  return {
    host: String(row.host),
    port: String(row.port),
    database: String(row.db),
    charset: String(row.charset),
  }
}

const where = (identity: ServerIdentity): string =>
  `${identity.host}:${identity.port}, database ${identity.database}`

/** True when `core` (a mysql2 core connection) is one of `pool`'s connections. */
const isOfPool = (core: object, pool: Pool): boolean => {
  const corePool = (core as { _pool?: unknown })._pool
  return corePool !== undefined && corePool === (pool as unknown as { pool?: unknown }).pool
}

/** True when `db` is a connection of `pool` (a promise wrapper over one of its core connections). */
export const isConnectionOf = (db: object, pool: Pool): boolean => {
  const core = (db as { connection?: unknown }).connection
  return typeof core === 'object' && core !== null && isOfPool(core, pool)
}

/** Another pool's connection keeps its server and database: read once per physical connection. */
const identities = new WeakMap<object, Promise<ServerIdentity>>()

/** `SERVER_STATUS_IN_TRANS` and `SERVER_STATUS_AUTOCOMMIT` of the protocol's OK packet. */
const IN_TRANS = 0x0001
const AUTOCOMMIT = 0x0002

/**
 * Whether the connection's next statement is part of a transaction, as the server reports it
 * in the status flags of an OK packet: inside `BEGIN`, or with autocommit off. mysql2 keeps no
 * transaction state of its own, so a no-op statement asks.
 */
const inTransaction = async (connection: StatementTarget): Promise<boolean> => {
  const [header] = await connection.query<ResultSetHeader>('DO 0')
  return (header.serverStatus & IN_TRANS) !== 0 || (header.serverStatus & AUTOCOMMIT) === 0
}

/** What a write through a `{ tx }` that is not inside a transaction is refused with. */
export const notInTransaction = (handle: MySqlQueryHandle): ValidationError =>
  new ValidationError(
    ADAPTER,
    `tx (${handle.source}) is not inside a transaction: it was never begun, or it was already committed or rolled back, ` +
      'so the write would commit on its own. Write inside the open transaction (beginTransaction() first), or use store.transaction(fn)',
  )

/**
 * The connection of a caller's `{ tx }`, checked before the first write through it: the
 * transaction is open (a write outside it would autocommit on its own), and the connection
 * writes to the store's server and database with utf8mb4 (else the event would land in
 * another database's tables, or lose characters). ValidationErrors name the handle. With
 * `deferOpenCheck` a handle that does not know its state is not asked (`unchecked`): the
 * caller's first statement through it must fail outside a transaction, and then throw
 * {@link notInTransaction}.
 */
export const openConnection = async (
  handle: MySqlQueryHandle,
  pool: Pool,
  storeIdentity: () => Promise<ServerIdentity>,
  options: { readonly deferOpenCheck?: boolean } = {},
): Promise<{ readonly connection: StatementTarget; readonly unchecked: boolean }> => {
  const { connection, open, session } = await handle.connect(pool)
  // Deferred: the caller's first statement checks it itself (see `IN_TRANSACTION_GUARD`).
  const unchecked = !open && options.deferOpenCheck === true
  if (!open && !unchecked && !(await inTransaction(connection))) throw notInTransaction(handle)
  // The store's own pool cannot point elsewhere; anything else is asked once per connection.
  const key = session ?? coreConnection(connection as Connection)
  if (isOfPool(key, pool)) return { connection, unchecked }
  let identity = identities.get(key)
  if (identity === undefined) {
    identity = readIdentity(connection)
    identities.set(key, identity)
    identity.catch(() => identities.delete(key))
  }
  const [theirs, ours] = await Promise.all([identity, storeIdentity()])
  if (theirs.host !== ours.host || theirs.port !== ours.port || theirs.database !== ours.database)
    throw new ValidationError(
      ADAPTER,
      `tx (${handle.source}) is connected to ${where(theirs)}, but the store writes to ${where(ours)}: ` +
        "pass a transaction of the store's database, or create the store on that database's pool",
    )
  if (theirs.charset !== 'utf8mb4')
    throw new ValidationError(
      ADAPTER,
      `tx (${handle.source}) talks ${theirs.charset}, not utf8mb4, so emoji and other 4-byte characters would be lost: ` +
        "configure its connections with charset 'utf8mb4' (e.g. 'utf8mb4_bin')",
    )
  return { connection, unchecked }
}
