import { createHash } from 'node:crypto'
import { withStorageErrors } from '@txbox/core'
import type { Pool } from 'mysql2/promise'
import { detectDialect } from './dialect.js'
import { ADAPTER, ER_CANT_DROP_FIELD_OR_KEY, errnoOf } from './errors.js'
import { toDateTime } from './rows.js'
import { runWrite, selectRows } from './run.js'
import { migrations, renderMigration, schemaVersionSql, tableNames } from './sql.js'

/** Seconds a migrator waits for another one to finish. */
const LOCK_TIMEOUT_SECONDS = 30

/**
 * The advisory lock name: server-wide, so it names the database and the prefix, hashed to
 * stay within the 64-character limit of `GET_LOCK`.
 */
const lockName = (database: string, prefix: string): string =>
  `txbox_migrate_${createHash('sha256').update(`${database}\u0000${prefix}`).digest('hex').slice(0, 40)}`

/**
 * Creates or upgrades the schema of one table prefix. MySQL DDL is not transactional (each
 * CREATE commits on its own), so every step is idempotent by itself (`CREATE TABLE IF NOT
 * EXISTS`, indexes inside the CREATE) and concurrent migrators are serialized by a named
 * lock held on one connection; the version table records which files have run.
 */
export const migrate = (pool: Pool, prefix: string, clock: () => Date): Promise<void> =>
  withStorageErrors(ADAPTER, 'migrate', async () => {
    const names = tableNames(prefix)
    const versions = schemaVersionSql(names.schemaVersion)
    const connection = await pool.getConnection()
    let healthy = false
    try {
      const [current] = await selectRows(connection, 'SELECT DATABASE() AS db', [])
      if (current?.db === null || current?.db === undefined) {
        throw new Error(
          'the connection has no default database: put one in the pool options (database or the URL path)',
        )
      }
      const lock = lockName(String(current.db), prefix)
      const [acquired] = await selectRows(connection, 'SELECT GET_LOCK(?, ?) AS acquired', [
        lock,
        LOCK_TIMEOUT_SECONDS,
      ])
      if (Number(acquired?.acquired) !== 1) {
        throw new Error(`another migrator held the lock ${lock} for more than ${LOCK_TIMEOUT_SECONDS} s`)
      }
      try {
        const dialect = await detectDialect(connection)
        await connection.query(versions.create)
        const rows = await selectRows(connection, versions.applied, [])
        const applied = new Set(rows.map((row) => Number(row.version)))
        for (const step of migrations()) {
          if (applied.has(step.version)) continue
          try {
            await connection.query(renderMigration(step.sql, { prefix, idCollation: dialect.idCollation }))
          } catch (error) {
            // A step that drops a key is idempotent only this way (MySQL has no DROP INDEX IF
            // EXISTS): the key is already gone when the step ran before its version was recorded.
            if (errnoOf(error) !== ER_CANT_DROP_FIELD_OR_KEY) throw error
          }
          await runWrite(connection, versions.record, [step.version, step.name, toDateTime(clock())])
        }
      } finally {
        await selectRows(connection, 'SELECT RELEASE_LOCK(?) AS released', [lock])
      }
      healthy = true
    } finally {
      // A connection that failed mid-way might still hold the named lock: close it instead.
      if (healthy) connection.release()
      else connection.destroy()
    }
  })
