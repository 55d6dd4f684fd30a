import { DEFAULT_MAX_EVENT_BYTES, defineCapabilities, type TxboxStore } from '@txbox/core'
import type { ClientBase } from 'pg'
import { withPostgresErrors } from './errors.js'
import { PostgresInboxRepository } from './postgres-inbox-repository.js'
import { type PostgresStoreOptions, type PostgresTransaction, resolveOptions } from './postgres-options.js'
import { PostgresOutboxRepository } from './postgres-outbox-repository.js'
import { createPostgresWakeup, type PostgresWakeup } from './postgres-wakeup.js'
import { loadMigrations, migrationSql, renderMigration } from './sql.js'

/**
 * What the PostgreSQL store promises: the caller's own transaction, and SKIP LOCKED claims
 * (with the default `maxEventBytes`; a store's own `capabilities` carry its configured limit).
 */
export const postgresCapabilities = defineCapabilities({
  transactions: 'native',
  claim: 'skip-locked',
  maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
})

/** The store returned by {@link createPostgresStore}. */
export interface PostgresStore extends TxboxStore<PostgresTransaction> {
  readonly outbox: PostgresOutboxRepository
  readonly inbox: PostgresInboxRepository
  /** Frozen; `maxEventBytes` is this store's configured limit. */
  readonly capabilities: typeof postgresCapabilities
  /** The schema holding the tables. */
  readonly schema: string
  /** The table prefix. */
  readonly tablePrefix: string
  /** The `LISTEN/NOTIFY` channel enqueues notify on. */
  readonly channel: string
  /**
   * A wake-up hint on this store's channel. Uses one connection of the store's pool while
   * listening, or `client` when given.
   */
  createWakeup(options?: { client?: ClientBase | undefined }): PostgresWakeup
}

/**
 * Creates the outbox and inbox on a pg Pool. Call `migrate()` once at startup (or apply
 * migrations/*.sql with your own tool).
 */
export const createPostgresStore = (options: PostgresStoreOptions): PostgresStore => {
  const resolved = resolveOptions(options)
  const { pool, schema, tablePrefix, channel } = resolved
  return {
    outbox: new PostgresOutboxRepository(resolved),
    inbox: new PostgresInboxRepository(resolved),
    capabilities: defineCapabilities({ ...postgresCapabilities, maxEventBytes: resolved.maxEventBytes }),
    schema,
    tablePrefix,
    channel,
    migrate: () => migratePostgres(resolved),
    createWakeup: (wakeupOptions = {}) =>
      createPostgresWakeup(
        wakeupOptions.client === undefined ? { pool, channel } : { client: wakeupOptions.client, channel },
      ),
  }
}

/**
 * Applies the DDL files that are not yet recorded in `<prefix>schema_version`, all in one
 * transaction behind an advisory lock, so two processes migrating at once both succeed (the
 * second waits, then finds nothing to do) and a failed migration leaves nothing half done.
 */
export const migratePostgres = async (options: PostgresStoreOptions): Promise<void> => {
  const { pool, schema, tablePrefix, clock } = resolveOptions(options)
  const sql = migrationSql(schema, tablePrefix)
  const migrations = loadMigrations()
  await withPostgresErrors('migrate', async () => {
    const client = await pool.connect()
    let broken: Error | undefined
    try {
      await client.query('BEGIN')
      await client.query(sql.lock, [schema])
      // CREATE SCHEMA IF NOT EXISTS checks the CREATE privilege on the database even when the
      // schema exists, so it only runs when the schema is really missing.
      const exists = await client.query(sql.schemaExists, [schema])
      if (exists.rowCount === 0) await client.query(sql.createSchema)
      await client.query(sql.createVersionTable)
      const applied = await client.query<{ version: number }>(sql.appliedVersions)
      const done = new Set(applied.rows.map((row) => row.version))
      for (const migration of migrations) {
        if (done.has(migration.version)) continue
        await client.query(renderMigration(migration.template, schema, tablePrefix))
        await client.query(sql.recordVersion, [migration.version, migration.name, clock()])
      }
      await client.query('COMMIT')
    } catch (error) {
      try {
        await client.query('ROLLBACK')
      } catch (rollbackError) {
        // The connection is unusable: destroy it instead of returning it to the pool.
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError))
      }
      throw error
    } finally {
      client.release(broken)
    }
  })
}
