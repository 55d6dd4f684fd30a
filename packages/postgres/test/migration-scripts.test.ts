import { formatReport, runConformance } from '@txbox/conformance'
import { formatMigrationScripts, ManualClock } from '@txbox/core'
import type pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { createConformanceTarget } from '../src/conformance-target.js'
import { migrationScripts, postgresMigrations } from '../src/migrate.js'
import { createPostgresStore } from '../src/postgres-store.js'
import { freshSchema, newPool, noServer, skipReason, url } from './helpers.js'

describe('postgres migration files', () => {
  it('ship a down file for every migration', () => {
    expect(postgresMigrations().filter((migration) => migration.down === undefined)).toEqual([])
  })
})

/** Applies the printed text as a user's tool would: the whole file, comments included, in one query. */
const applyPrinted = async (
  pool: pg.Pool,
  options: Parameters<typeof migrationScripts>[0],
): Promise<void> => {
  await pool.query(formatMigrationScripts(migrationScripts(options)))
}

describe.skipIf(noServer)(`printed migrations${noServer ? ` (skipped: ${skipReason})` : ''}`, () => {
  const pool = newPool(4)
  const schemas: string[] = []
  const schemaFor = () => {
    const schema = freshSchema()
    schemas.push(schema)
    return schema
  }

  afterAll(async () => {
    for (const schema of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await pool.end()
  })

  /**
   * Everything of `prefix` in `schema` the catalog knows, names and definitions with the
   * schema and prefix replaced, so two namespaces compare: relations (tables, indexes,
   * sequences), columns, constraints, index definitions, functions, triggers and types.
   */
  const catalog = async (schema: string, prefix: string) => {
    const normal = (text: unknown) => String(text).replaceAll(schema, '<s>').replaceAll(prefix, '<p>')
    const rows = async (sql: string) =>
      (await pool.query(sql, [schema, prefix])).rows.map((row: Record<string, unknown>) =>
        Object.values(row).map(normal).join(' | '),
      )
    const mine = 'n.nspname = $1 AND left(c.relname, length($2)) = $2'
    return {
      relations: await rows(
        `SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${mine} ORDER BY 1`,
      ),
      columns: await rows(
        `SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity, ordinal_position
           FROM information_schema.columns WHERE table_schema = $1 AND left(table_name, length($2)) = $2 ORDER BY 1, 7`,
      ),
      constraints: await rows(
        `SELECT con.conname, c.relname, pg_get_constraintdef(con.oid) FROM pg_constraint con
           JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${mine} ORDER BY 1`,
      ),
      indexes: await rows(
        `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND left(tablename, length($2)) = $2 ORDER BY 1`,
      ),
      functions: await rows(
        `SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = $1 AND left(p.proname, length($2)) = $2 ORDER BY 1`,
      ),
      triggers: await rows(
        `SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${mine} ORDER BY 1`,
      ),
      types: await rows(
        `SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE n.nspname = $1 AND (left(t.typname, length($2)) = $2 OR left(t.typname, length($2) + 1) = '_' || $2)
           ORDER BY 1`,
      ),
    }
  }

  const history = async (schema: string, prefix = 'txbox_') =>
    (
      await pool.query<{ version: number; name: string; applied_at: Date }>(
        `SELECT version, name, applied_at FROM "${schema}"."${prefix}schema_version" ORDER BY version`,
      )
    ).rows

  it('prints DDL that builds the very schema migrate() builds, and records every version as it does', async () => {
    const printed = schemaFor()
    const runtime = schemaFor()
    await applyPrinted(pool, { schema: printed })
    await createPostgresStore({ pool, schema: runtime }).migrate()
    const built = await catalog(printed, 'txbox_')
    expect(built.indexes.length).toBeGreaterThan(5)
    expect(built).toEqual(await catalog(runtime, 'txbox_'))
    const names = (rows: { version: number; name: string }[]) =>
      rows.map(({ version, name }) => [version, name])
    expect(names(await history(printed))).toEqual(names(await history(runtime)))
  })

  it('certifies: the conformance suite passes on tables built only by the printed DDL', async () => {
    let applied = 0
    const target = createConformanceTarget({
      applySchema: async ({ pool: fixturePool, schema, tablePrefix }) => {
        await applyPrinted(fixturePool, { schema, tablePrefix })
        applied++
      },
    })
    const report = await runConformance(target, {
      server: { engine: 'postgres', url: url as string, source: 'env' },
    })
    expect(applied).toBeGreaterThan(0)
    expect(report.summary.failed + report.summary.errors, formatReport(report)).toBe(0)
    expect(report.ok, formatReport(report)).toBe(true)
  })

  it('leaves migrate() nothing to apply after the printed up scripts', async () => {
    const schema = schemaFor()
    await applyPrinted(pool, { schema, tablePrefix: 'app_' })
    const before = await history(schema, 'app_')
    expect(before.map((row) => row.version)).toEqual(
      postgresMigrations().map((migration) => migration.version),
    )
    const built = await catalog(schema, 'app_')
    // A step migrate() applied would be recorded at this clock's time.
    const clock = new ManualClock(new Date('2001-02-03T04:05:06.007Z'))
    await createPostgresStore({ pool, schema, tablePrefix: 'app_', clock: clock.now }).migrate()
    expect(await history(schema, 'app_')).toEqual(before)
    expect(await catalog(schema, 'app_')).toEqual(built)
  })

  it('the printed down removes every table, index, sequence, type and the history of its prefix, and nothing else', async () => {
    const schema = schemaFor()
    await createPostgresStore({ pool, schema, tablePrefix: 'other_' }).migrate()
    const neighbour = await catalog(schema, 'other_')
    await applyPrinted(pool, { schema, tablePrefix: 'app_' })
    const store = createPostgresStore({ pool, schema, tablePrefix: 'app_' })
    await store.outbox.findOrCreate({ eventId: 'e1', subject: 's', payload: '{}' })
    await store.inbox.findOrCreate({ eventId: 'e1', subject: 's', payload: '{}' })
    expect((await catalog(schema, 'app_')).relations.length).toBeGreaterThan(10)
    await applyPrinted(pool, { schema, tablePrefix: 'app_', direction: 'down' })
    expect(await catalog(schema, 'app_')).toEqual({
      relations: [],
      columns: [],
      constraints: [],
      indexes: [],
      functions: [],
      triggers: [],
      types: [],
    })
    expect(await catalog(schema, 'other_')).toEqual(neighbour)
    // The schema itself stays: it may hold other tables.
    expect((await pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).rowCount).toBe(1)
  })

  it('steps one version down and up again', async () => {
    const schema = schemaFor()
    await applyPrinted(pool, { schema })
    const streamKey = async () =>
      (await catalog(schema, 'txbox_')).constraints.filter((c) => c.startsWith('<p>inbox_stream_key'))
    expect(await streamKey()).toEqual([])
    const wakeupTable = async () =>
      (await catalog(schema, 'txbox_')).relations.filter((relation) => relation === '<p>wakeup | r')
    expect(await wakeupTable()).toEqual(['<p>wakeup | r'])
    await applyPrinted(pool, { schema, direction: 'down', from: 2, to: 5 })
    expect((await history(schema)).map((row) => row.version)).toEqual([1])
    expect(await streamKey()).toEqual(['<p>inbox_stream_key | <p>inbox | UNIQUE (stream, stream_seq)'])
    expect(await wakeupTable()).toEqual([])
    await applyPrinted(pool, { schema, from: 2 })
    expect((await history(schema)).map((row) => row.version)).toEqual([1, 2, 3, 4, 5])
    expect(await streamKey()).toEqual([])
    expect(await wakeupTable()).toEqual(['<p>wakeup | r'])
  })
})
