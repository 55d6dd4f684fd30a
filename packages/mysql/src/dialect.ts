import { type Queryable, selectRows } from './client.js'

/** Which server family answered: the two differ in collation names and version numbering. */
export type DialectName = 'mariadb' | 'mysql'

/** What the adapter needs to know about the server it talks to. */
export interface Dialect {
  readonly name: DialectName
  /** The numeric version, e.g. `10.11.6` or `8.0.36`. */
  readonly version: string
  /** For reports: `MariaDB 10.11.6`, `MySQL 8.0.36`. */
  readonly label: string
  /**
   * The collation of id columns (event ids, streams, worker ids). It must be binary (ids are
   * case-sensitive and byte-exact) and NO PAD: `utf8mb4_bin` is PAD SPACE on both servers,
   * so `'a'` and `'a '` would be the same unique key. MariaDB names the NO PAD one
   * `utf8mb4_nopad_bin`, MySQL 8.0.17+ `utf8mb4_0900_bin`.
   */
  readonly idCollation: string
}

const MARIADB_MIN = [10, 6, 0] as const
const MYSQL_MIN = [8, 0, 1] as const
const MYSQL_0900_BIN = [8, 0, 17] as const

const atLeast = (version: readonly number[], min: readonly number[]): boolean => {
  for (let i = 0; i < min.length; i++) {
    const part = version[i] ?? 0
    const want = min[i] ?? 0
    if (part !== want) return part > want
  }
  return true
}

/**
 * Reads the family and version from `SELECT VERSION()`: MariaDB says so in the string
 * (`10.11.6-MariaDB-0+deb12u1`), MySQL does not (`8.0.36`). Throws a plain Error for a
 * server without `FOR UPDATE SKIP LOCKED` (MySQL < 8.0.1, MariaDB < 10.6), which the claim needs.
 */
export const parseDialect = (versionString: string): Dialect => {
  const match = /^(\d+)\.(\d+)\.(\d+)/.exec(versionString)
  if (!match) throw new Error(`cannot read the server version from ${JSON.stringify(versionString)}`)
  const parts = [Number(match[1]), Number(match[2]), Number(match[3])]
  const version = parts.join('.')
  if (/mariadb/i.test(versionString)) {
    if (!atLeast(parts, MARIADB_MIN))
      throw new Error(`MariaDB ${version} is not supported: 10.6+ is needed for SKIP LOCKED`)
    return { name: 'mariadb', version, label: `MariaDB ${version}`, idCollation: 'utf8mb4_nopad_bin' }
  }
  if (!atLeast(parts, MYSQL_MIN))
    throw new Error(`MySQL ${version} is not supported: 8.0.1+ is needed for SKIP LOCKED`)
  return {
    name: 'mysql',
    version,
    label: `MySQL ${version}`,
    // Before 8.0.17 only the PAD SPACE binary collation exists: ids that differ only in
    // trailing spaces then collide (documented in the README).
    idCollation: atLeast(parts, MYSQL_0900_BIN) ? 'utf8mb4_0900_bin' : 'utf8mb4_bin',
  }
}

/** Asks the server who it is. */
export const detectDialect = async (db: Queryable): Promise<Dialect> => {
  const rows = await selectRows(db, 'SELECT VERSION() AS version', [])
  const version = rows[0]?.version
  return parseDialect(String(version))
}
