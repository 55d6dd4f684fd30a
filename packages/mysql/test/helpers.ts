import { randomBytes } from 'node:crypto'
import { createPool, type Pool, type PoolOptions, type RowDataPacket } from 'mysql2/promise'
import { createMySqlStore, type MySqlStore, type MySqlStoreOptions } from '../src/index.js'

/** The server for these tests; without it they are skipped (or fail under TXBOX_REQUIRE_ALL=1). */
export const MYSQL_URL = process.env.TXBOX_MYSQL_URL
export const SKIP = MYSQL_URL === undefined && process.env.TXBOX_REQUIRE_ALL !== '1'
export const SKIP_REASON =
  'TXBOX_MYSQL_URL is not set (start MariaDB with `bash scripts/services.sh up mariadb`)'

export const makePool = (options: Partial<PoolOptions> = {}): Pool => {
  if (MYSQL_URL === undefined) throw new Error(`TXBOX_REQUIRE_ALL=1 but ${SKIP_REASON}`)
  return createPool({ uri: MYSQL_URL, connectionLimit: 12, charset: 'utf8mb4_bin', ...options })
}

export const freshPrefix = (): string => `t_${randomBytes(5).toString('hex')}_`

/** A migrated store on a fresh prefix, and a function that drops its tables. */
export const freshStore = async (
  pool: Pool,
  options: Partial<MySqlStoreOptions> = {},
): Promise<{ store: MySqlStore; drop: () => Promise<void> }> => {
  const store = createMySqlStore({ pool, tablePrefix: freshPrefix(), ...options })
  await store.migrate()
  const p = store.tablePrefix
  return {
    store,
    drop: async () => {
      await pool.query(
        `DROP TABLE IF EXISTS \`${p}outbox\`, \`${p}outbox_keys\`, \`${p}inbox\`, \`${p}schema_version\``,
      )
    },
  }
}

/** Connections of a mysql2/promise pool: all it holds, and how many of them are idle. */
export const poolCounts = (pool: Pool): { all: number; idle: number } => {
  const core = (
    pool as unknown as { pool: { _allConnections: { length: number }; _freeConnections: { length: number } } }
  ).pool
  return { all: core._allConnections.length, idle: core._freeConnections.length }
}

/** A business table beside the store's tables (dropped by the returned function). */
export const ordersTable = async (
  pool: Pool,
  prefix: string,
): Promise<{ table: string; ids: () => Promise<string[]>; drop: () => Promise<void> }> => {
  const table = `${prefix}orders`
  await pool.query(
    `CREATE TABLE \`${table}\` (id VARCHAR(64) PRIMARY KEY, n INT NOT NULL DEFAULT 0) ENGINE=InnoDB`,
  )
  return {
    table,
    ids: async () => {
      const [rows] = await pool.query<RowDataPacket[]>(`SELECT id FROM \`${table}\` ORDER BY id`)
      return rows.map((row) => String(row.id))
    },
    drop: async () => {
      await pool.query(`DROP TABLE IF EXISTS \`${table}\``)
    },
  }
}

/**
 * Counts the statements the adapter runs on a pool (its `execute`, the only way it sends
 * them outside a transaction): all of them, and the SELECTs.
 */
export const countStatements = (pool: Pool): { statements: () => number; selects: () => number } => {
  let statements = 0
  let selects = 0
  const execute = pool.execute.bind(pool) as (...args: unknown[]) => unknown
  ;(pool as unknown as { execute: (...args: unknown[]) => unknown }).execute = (...args: unknown[]) => {
    const sql = typeof args[0] === 'string' ? args[0] : (args[0] as { sql: string }).sql
    statements++
    if (/^\s*SELECT/i.test(sql)) selects++
    return execute(...args)
  }
  return { statements: () => statements, selects: () => selects }
}
