import { connectSqlite, type SqliteConnection } from '@txbox/sqlite'

/**
 * A connection to the bench's SQLite file, with the store under `prefix`: WAL with
 * synchronous = NORMAL, the usual setting with WAL. The bench's own choice, not the
 * adapter's (which leaves `synchronous` to the application), so it is set here.
 */
export const openSqlite = (file: string, prefix?: string): SqliteConnection => {
  const connection = connectSqlite(file, { prefix })
  connection.client.pragma('journal_mode = WAL')
  connection.client.pragma('synchronous = NORMAL')
  return connection
}
