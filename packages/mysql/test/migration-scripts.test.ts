import { formatReport, runConformance } from '@txbox/conformance'
import { formatMigrationScripts, ManualClock } from '@txbox/core'
import { createConnection, type Pool, type RowDataPacket } from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createConformanceTarget } from '../src/conformance-target.js'
import { detectDialect } from '../src/dialect.js'
import { createMySqlStore } from '../src/index.js'
import { type MySqlMigrationScriptOptions, migrationScripts, mySqlMigrations } from '../src/migrate.js'
import { freshPrefix, MYSQL_URL, makePool, SKIP, SKIP_REASON } from './helpers.js'

describe('mysql migration files', () => {
  it('ship a down file for every migration', () => {
    expect(mySqlMigrations().filter((migration) => migration.down === undefined)).toEqual([])
  })

  it('refuses to print without the server version, or for a server without SKIP LOCKED', () => {
    expect(() => migrationScripts({} as MySqlMigrationScriptOptions)).toThrow(
      /^\[txbox\] \[mysql\] serverVersion is required/,
    )
    expect(() => migrationScripts({ serverVersion: '10.5.2-MariaDB' })).toThrow(
      /serverVersion: MariaDB 10\.5\.2 is not supported: 10\.6\+ is needed for SKIP LOCKED/,
    )
  })
})

/** The server's answer to SELECT VERSION(), as a user passes it to --server-version. */
const serverVersionOf = async (pool: Pool): Promise<string> => {
  const [rows] = await pool.query<RowDataPacket[]>('SELECT VERSION() AS v')
  return String(rows[0]?.v)
}

/** Applies each printed statement alone, as Knex's `raw` or TypeORM's `query` would (no multipleStatements). */
const applyStatements = async (pool: Pool, options: MySqlMigrationScriptOptions): Promise<void> => {
  for (const script of migrationScripts(options))
    for (const statement of script.statements) await pool.query(statement)
}

describe.skipIf(SKIP)(`printed migrations${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  let pool: Pool
  let serverVersion: string
  const prefixes: string[] = []
  const prefixFor = () => {
    const prefix = freshPrefix()
    prefixes.push(prefix)
    return prefix
  }

  beforeAll(async () => {
    pool = makePool()
    serverVersion = await serverVersionOf(pool)
  })

  afterAll(async () => {
    for (const prefix of prefixes)
      await pool.query(
        `DROP TABLE IF EXISTS \`${prefix}outbox\`, \`${prefix}outbox_keys\`, \`${prefix}inbox\`, \`${prefix}schema_version\``,
      )
    await pool?.end()
  })

  /**
   * Everything of `prefix` in the current database the catalog knows, the prefix replaced so
   * two prefixes compare: tables, columns, index columns, routines, triggers and views.
   */
  const catalog = async (prefix: string) => {
    const rows = async (sql: string, params: unknown[]) => {
      const [result] = await pool.query<RowDataPacket[]>(sql, params)
      return result.map((row) =>
        Object.values(row)
          .map((value) => String(value).replaceAll(prefix, '<p>'))
          .join(' | '),
      )
    }
    const mine = (column: string) => `table_schema = DATABASE() AND LEFT(${column}, ?) = ?`
    const p = [prefix.length, prefix]
    return {
      tables: await rows(
        `SELECT table_name, table_type, engine, table_collation FROM information_schema.tables WHERE ${mine('table_name')} ORDER BY 1`,
        p,
      ),
      columns: await rows(
        `SELECT table_name, column_name, column_type, collation_name, is_nullable, column_default, extra, ordinal_position
           FROM information_schema.columns WHERE ${mine('table_name')} ORDER BY 1, 8`,
        p,
      ),
      indexes: await rows(
        `SELECT table_name, index_name, non_unique, seq_in_index, column_name
           FROM information_schema.statistics WHERE ${mine('table_name')} ORDER BY 1, 2, 4`,
        p,
      ),
      routines: await rows(
        `SELECT routine_name FROM information_schema.routines WHERE routine_schema = DATABASE() AND LEFT(routine_name, ?) = ?`,
        p,
      ),
      triggers: await rows(
        `SELECT trigger_name FROM information_schema.triggers
           WHERE trigger_schema = DATABASE() AND (LEFT(trigger_name, ?) = ? OR LEFT(event_object_table, ?) = ?)`,
        [...p, ...p],
      ),
    }
  }

  const history = async (prefix: string) => {
    const [rows] = await pool.query<RowDataPacket[]>(
      `SELECT version, name, applied_at FROM \`${prefix}schema_version\` ORDER BY version`,
    )
    return rows.map((row) => ({
      version: Number(row.version),
      name: String(row.name),
      appliedAt: row.applied_at,
    }))
  }

  it("prints DDL that builds the very tables migrate() builds, with this server's id collation", async () => {
    const printed = prefixFor()
    const runtime = prefixFor()
    // The whole printed text at once, as Flyway or a mysql client would run the file.
    const flyway = await createConnection({ uri: MYSQL_URL as string, multipleStatements: true })
    try {
      await flyway.query(formatMigrationScripts(migrationScripts({ tablePrefix: printed, serverVersion })))
    } finally {
      await flyway.end()
    }
    await createMySqlStore({ pool, tablePrefix: runtime }).migrate()
    const built = await catalog(printed)
    expect(built.tables).toHaveLength(4)
    expect(built.columns.join('\n')).toContain(
      `<p>outbox | event_id | varchar(255) | ${(await detectDialect(pool)).idCollation}`,
    )
    expect(built).toEqual(await catalog(runtime))
    const names = (rows: { version: number; name: string }[]) =>
      rows.map(({ version, name }) => [version, name])
    expect(names(await history(printed))).toEqual(names(await history(runtime)))
  })

  it('certifies: the conformance suite passes on tables built only by the printed DDL', async () => {
    let applied = 0
    const target = createConformanceTarget({
      applySchema: async ({ pool: fixturePool, tablePrefix }) => {
        await applyStatements(fixturePool, { tablePrefix, serverVersion })
        applied++
      },
    })
    const report = await runConformance(target, {
      server: { engine: 'mysql', url: MYSQL_URL as string, source: 'env' },
    })
    expect(applied).toBeGreaterThan(0)
    expect(report.summary.failed + report.summary.errors, formatReport(report)).toBe(0)
    expect(report.ok, formatReport(report)).toBe(true)
  })

  it('leaves migrate() nothing to apply after the printed up scripts', async () => {
    const prefix = prefixFor()
    await applyStatements(pool, { tablePrefix: prefix, serverVersion })
    const before = await history(prefix)
    expect(before.map((row) => row.version)).toEqual(mySqlMigrations().map((migration) => migration.version))
    const built = await catalog(prefix)
    // A step migrate() applied would be recorded at this clock's time.
    const clock = new ManualClock(new Date('2001-02-03T04:05:06.007Z'))
    await createMySqlStore({ pool, tablePrefix: prefix, clock: clock.now }).migrate()
    expect(await history(prefix)).toEqual(before)
    expect(await catalog(prefix)).toEqual(built)
  })

  it('the printed down removes every table, index and the history of its prefix, and nothing else', async () => {
    const neighbourPrefix = prefixFor()
    await createMySqlStore({ pool, tablePrefix: neighbourPrefix }).migrate()
    const neighbour = await catalog(neighbourPrefix)
    const prefix = prefixFor()
    await applyStatements(pool, { tablePrefix: prefix, serverVersion })
    const store = createMySqlStore({ pool, tablePrefix: prefix })
    await store.outbox.findOrCreate({ eventId: 'e1', subject: 's', payload: '{}' })
    await store.inbox.findOrCreate({ eventId: 'e1', subject: 's', payload: '{}' })
    await applyStatements(pool, { tablePrefix: prefix, serverVersion, direction: 'down' })
    expect(await catalog(prefix)).toEqual({
      tables: [],
      columns: [],
      indexes: [],
      routines: [],
      triggers: [],
    })
    expect(await catalog(neighbourPrefix)).toEqual(neighbour)
  })

  it('steps versions down and up again', async () => {
    const prefix = prefixFor()
    await applyStatements(pool, { tablePrefix: prefix, serverVersion })
    const full = await catalog(prefix)
    const streamKey = async () =>
      (await catalog(prefix)).indexes.filter((row) => row.includes('ux_stream_seq'))
    const ordering = async () => {
      const { tables, columns, indexes } = await catalog(prefix)
      return [...tables, ...columns, ...indexes].filter((row) =>
        /outbox_keys|ordering_key|key_seq|ix_key_head/.test(row),
      )
    }
    expect(await streamKey()).toEqual([])
    expect(await ordering()).not.toEqual([])
    await applyStatements(pool, { tablePrefix: prefix, serverVersion, direction: 'down', from: 4, to: 4 })
    expect((await history(prefix)).map((row) => row.version)).toEqual([1, 2, 3])
    expect(await ordering()).toEqual([])
    await applyStatements(pool, { tablePrefix: prefix, serverVersion, direction: 'down', from: 3, to: 3 })
    expect((await history(prefix)).map((row) => row.version)).toEqual([1, 2])
    expect(await streamKey()).toEqual([
      '<p>inbox | ux_stream_seq | 0 | 1 | stream',
      '<p>inbox | ux_stream_seq | 0 | 2 | stream_seq',
    ])
    await applyStatements(pool, { tablePrefix: prefix, serverVersion, from: 3 })
    expect((await history(prefix)).map((row) => row.version)).toEqual([1, 2, 3, 4])
    expect(await streamKey()).toEqual([])
    expect(await catalog(prefix)).toEqual(full)
  })
})
