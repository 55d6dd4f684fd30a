import {
  applyMigrations,
  buildMigrationScripts,
  checkMigrationScriptOptions,
  loadMigrations,
  type Migration,
  type MigrationHistory,
  type MigrationScript,
  type MigrationScriptDialect,
  type MigrationScriptRange,
  renderMigration,
  runStorageOperation,
} from '@txbox/core'
import type { ClientBase, Pool } from 'pg'
import { withTransaction } from './client.js'
import { ADAPTER, classifyPostgresError } from './errors.js'
import { INBOX_PARTITIONS, OUTBOX_PARTITIONS } from './partition-sql.js'
import {
  DEFAULT_SCHEMA,
  type PostgresStoreOptions,
  resolveNamespace,
  resolveOptions,
} from './postgres-options.js'
import { PostgresPartitions, partitionTable, type ResolvedPartitioning } from './postgres-partitions.js'
import { qualified } from './sql.js'

/**
 * Where the DDL files are: `migrations/` beside both `src/` and `dist/`. Files are
 * `NNNN_<name>.sql` with `{{schema}}` and `{{prefix}}` placeholders, applied in order.
 */
export const migrationsDirectory = new URL('../migrations/', import.meta.url)

/** The statements of the history: the schema, the advisory lock, `<prefix>schema_version`. */
export const migrationSql = (schema: string, prefix: string) => {
  const versions = qualified(schema, `${prefix}schema_version`)
  return {
    schemaExists: 'SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1',
    createSchema: `CREATE SCHEMA IF NOT EXISTS "${schema}"`,
    // One lock per schema: every prefix in it shares the CREATE SCHEMA step, and two
    // processes migrating the same namespace serialize here instead of racing on the
    // catalog (concurrent CREATE ... IF NOT EXISTS can fail with a duplicate key).
    lock: `SELECT pg_advisory_xact_lock(hashtextextended('txbox:migrate:' || $1::text, 0))`,
    // The table of every release so far: one row per applied file (version, name).
    createVersionTable: `
      CREATE TABLE IF NOT EXISTS ${versions} (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        applied_at timestamptz NOT NULL
      )`,
    appliedVersions: `SELECT version FROM ${versions}`,
    recordVersion: `INSERT INTO ${versions} (version, name, applied_at) VALUES ($1, $2, $3)`,
    // The same history written by a migration tool instead of migrate(): no parameters, and
    // a file applied twice records once. Names are validated snake_case, safe to inline.
    recordVersionLiteral: (migration: Migration) =>
      `INSERT INTO ${versions} (version, name, applied_at) VALUES (${migration.version}, '${migration.name}', now()) ON CONFLICT (version) DO NOTHING`,
    forgetVersion: (migration: Migration) => `DELETE FROM ${versions} WHERE version = ${migration.version}`,
    dropVersionTable: `DROP TABLE IF EXISTS ${versions}`,
  }
}

let shipped: readonly Migration[] | undefined

/** The shipped DDL files, in version order (read once per process). */
export const postgresMigrations = (): readonly Migration[] => {
  shipped ??= loadMigrations(migrationsDirectory)
  return shipped
}

/** Fills a migration's placeholders with the validated schema and prefix. */
export const renderPostgresMigration = (migration: Migration, schema: string, prefix: string): string =>
  renderMigration(migration.body, { schema, prefix })

/** Options of {@link migrationScripts}: the store's namespace and which migrations. */
export interface PostgresMigrationScriptOptions extends MigrationScriptRange {
  /** The store's `schema` (default `public`). */
  readonly schema?: string | undefined
  /** The store's `tablePrefix` (default `txbox_`). */
  readonly tablePrefix?: string | undefined
}

/**
 * The shipped migrations as SQL for your own migration tool (Knex, Prisma Migrate, Flyway...):
 * the up scripts apply a version and record it in `<prefix>schema_version`, so a later
 * `migrate()` applies nothing; the down scripts (newest first) undo them, version 1's down
 * leaving no table, index or history of txbox in the namespace. Outside `public`, each up
 * script creates the schema when it is missing; no down script drops it.
 */
export const migrationScripts = (options: PostgresMigrationScriptOptions = {}): MigrationScript[] => {
  checkMigrationScriptOptions(ADAPTER, options, ['schema', 'tablePrefix'])
  const { schema, tablePrefix } = resolveNamespace(options)
  const sql = migrationSql(schema, tablePrefix)
  const dialect: MigrationScriptDialect = {
    adapter: ADAPTER,
    namespace: `schema "${schema}", table prefix "${tablePrefix}"`,
    values: { schema, prefix: tablePrefix },
    createHistory: [
      ...(schema === DEFAULT_SCHEMA ? [] : [sql.createSchema]),
      sql.createVersionTable.trim().replace(/\n {6}/g, '\n'),
    ],
    recordVersion: sql.recordVersionLiteral,
    forgetVersion: sql.forgetVersion,
    dropHistory: sql.dropVersionTable,
  }
  return buildMigrationScripts(postgresMigrations(), dialect, options)
}

/**
 * The history on one client inside its transaction: the whole run (every file and its
 * record) commits together, so a failed migration leaves nothing half done.
 */
const postgresHistory = (pool: Pool, schema: string, prefix: string): MigrationHistory => {
  const sql = migrationSql(schema, prefix)
  let client: ClientBase | undefined
  const on = (): ClientBase => {
    if (client === undefined) throw new Error('the migration history is used outside its lock')
    return client
  }
  return {
    locked: (apply) =>
      withTransaction(pool, async (locked) => {
        client = locked
        try {
          await locked.query(sql.lock, [schema])
          // CREATE SCHEMA IF NOT EXISTS checks the CREATE privilege on the database even when
          // the schema exists, so it only runs when the schema is really missing.
          const exists = await locked.query(sql.schemaExists, [schema])
          if (exists.rowCount === 0) await locked.query(sql.createSchema)
          await locked.query(sql.createVersionTable)
          return await apply()
        } finally {
          client = undefined
        }
      }),
    appliedVersions: async () =>
      (await on().query<{ version: number }>(sql.appliedVersions)).rows.map((row) => row.version),
    apply: async (migration) => {
      await on().query(renderPostgresMigration(migration, schema, prefix))
    },
    record: async (migration, appliedAt) => {
      await on().query(sql.recordVersion, [migration.version, migration.name, appliedAt])
    },
  }
}

/**
 * Applies the DDL files that are not yet recorded in `<prefix>schema_version`, all in one
 * transaction behind an advisory lock, so two processes migrating at once both succeed (the
 * second waits, then finds nothing to do) and a failed migration leaves nothing half done.
 * A history written by an earlier release (versions 1..n) is read as it is.
 */
export const migratePostgres = async (options: PostgresStoreOptions): Promise<void> => {
  const { pool, schema, tablePrefix, clock, partitioning } = resolveOptions(options)
  const migrations = postgresMigrations()
  await runStorageOperation(ADAPTER, 'migrate', classifyPostgresError, async () => {
    await applyMigrations(postgresHistory(pool, schema, tablePrefix), migrations, clock)
    if (partitioning !== undefined) await partitionTables(pool, schema, tablePrefix, partitioning, clock())
  })
}

/**
 * The time-partitioned layout, after the linear migrations: converts the tables not yet
 * partitioned (in one transaction behind migrate's advisory lock, so a failure leaves them
 * as they were), then creates the partitions of now and ahead. Outside the numbered
 * versions: the layout is the user's choice, and every numbered migration applies to
 * either layout (docs/MIGRATIONS.md).
 */
const partitionTables = async (
  pool: Pool,
  schema: string,
  prefix: string,
  partitioning: ResolvedPartitioning,
  now: Date,
): Promise<void> => {
  const sql = migrationSql(schema, prefix)
  const tables = [OUTBOX_PARTITIONS, INBOX_PARTITIONS]
  await withTransaction(pool, async (client) => {
    await client.query(sql.lock, [schema])
    for (const spec of tables) await partitionTable(client, schema, prefix, spec, partitioning, now)
  })
  for (const spec of tables) await new PostgresPartitions(pool, schema, prefix, spec).createAhead(now)
}
