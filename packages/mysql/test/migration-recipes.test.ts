import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { formatMigrationScripts, ManualClock } from '@txbox/core'
import knex, { type Knex } from 'knex'
import type { Pool, RowDataPacket } from 'mysql2/promise'
import { DataSource, type MigrationInterface } from 'typeorm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMySqlStore } from '../src/index.js'
import { migrationScripts, mySqlMigrations } from '../src/migrate.js'
import { MYSQL_URL, makePool, SKIP, SKIP_REASON } from './helpers.js'

/**
 * The recipe of docs/MIGRATIONS.md for `tool`, exactly as printed there: the first code block
 * in `language` under the tool's heading. Taken from the page so that it cannot drift.
 */
const recipe = (tool: string, language: string): string => {
  const page = readFileSync(new URL('../../../docs/MIGRATIONS.md', import.meta.url), 'utf8')
  const section = page.split(/^## /m).find((part) => part.startsWith(`${tool}\n`))
  const block = section?.split(`\`\`\`${language}\n`)[1]?.split('\n```')[0]
  if (block === undefined) throw new Error(`docs/MIGRATIONS.md has no ${language} block under "## ${tool}"`)
  return block
}

describe.skipIf(SKIP)(
  `the recipes of docs/MIGRATIONS.md on MariaDB${SKIP ? ` (skipped: ${SKIP_REASON})` : ''}`,
  () => {
    let pool: Pool
    let serverVersion: string
    let app: string
    const prefixes = ['rk_', 'rt_'].map((name) => `${name}${Date.now().toString(36)}_`)

    beforeAll(async () => {
      pool = makePool()
      const [rows] = await pool.query<RowDataPacket[]>('SELECT VERSION() AS v')
      serverVersion = String(rows[0]?.v)
      app = mkdtempSync(join(tmpdir(), 'txbox-recipe-'))
    })

    afterAll(async () => {
      for (const prefix of prefixes)
        await pool.query(
          `DROP TABLE IF EXISTS \`${prefix}outbox\`, \`${prefix}outbox_keys\`, \`${prefix}inbox\`, \`${prefix}schema_version\``,
        )
      await pool.query(
        'DROP TABLE IF EXISTS `rk_knex_migrations`, `rk_knex_migrations_lock`, `rt_typeorm_migrations`',
      )
      await pool?.end()
      rmSync(app, { recursive: true, force: true })
    })

    /** The files of "One file per version", printed through the API the CLI prints with. */
    const printFiles = (tablePrefix: string) => {
      mkdirSync(join(app, 'db', 'txbox'), { recursive: true })
      for (const { version } of mySqlMigrations())
        for (const direction of ['up', 'down'] as const) {
          const scripts = migrationScripts({
            tablePrefix,
            serverVersion,
            from: version,
            to: version,
            direction,
          })
          writeFileSync(
            join(app, 'db', 'txbox', `${version}.${direction}.sql`),
            formatMigrationScripts(scripts, { statementBreakpoints: true }),
          )
        }
    }

    const tablesOf = async (prefix: string) => {
      const [rows] = await pool.query<RowDataPacket[]>(
        'SELECT table_name AS t FROM information_schema.tables WHERE table_schema = DATABASE() AND LEFT(table_name, ?) = ? ORDER BY 1',
        [prefix.length, prefix],
      )
      return rows.map((row) => String(row.t))
    }

    const versionsOf = async (prefix: string) => {
      const [rows] = await pool.query<RowDataPacket[]>(
        `SELECT version, applied_at FROM \`${prefix}schema_version\` ORDER BY version`,
      )
      return rows
    }

    /** After the tool ran every up: every version recorded, and a migrate() changes nothing. */
    const migrateFindsNothing = async (prefix: string) => {
      const before = await versionsOf(prefix)
      expect(before.map((row) => Number(row.version))).toEqual(mySqlMigrations().map((m) => m.version))
      const clock = new ManualClock(new Date('2001-02-03T04:05:06.007Z'))
      await createMySqlStore({ pool, tablePrefix: prefix, clock: clock.now }).migrate()
      expect(await versionsOf(prefix)).toEqual(before)
    }

    it('Knex: one migration per version runs the printed files statement by statement, up and down', async () => {
      const prefix = prefixes[0] as string
      printFiles(prefix)
      mkdirSync(join(app, 'migrations'), { recursive: true })
      for (const { version } of mySqlMigrations())
        writeFileSync(
          join(app, 'migrations', `2026060112000${version}_txbox_000${version}.js`),
          recipe('Knex', 'js').replace(/'1\.(up|down)\.sql'/g, `'${version}.$1.sql'`),
        )
      const db: Knex = knex({ client: 'mysql2', connection: MYSQL_URL as string })
      try {
        const config = { directory: join(app, 'migrations'), tableName: 'rk_knex_migrations' }
        const [, ran] = (await db.migrate.latest(config)) as [number, string[]]
        expect(ran).toHaveLength(mySqlMigrations().length)
        expect(await tablesOf(prefix)).toEqual([
          `${prefix}inbox`,
          `${prefix}outbox`,
          `${prefix}outbox_keys`,
          `${prefix}schema_version`,
        ])
        await migrateFindsNothing(prefix)
        await db.migrate.rollback(config, true)
        expect(await tablesOf(prefix)).toEqual([])
      } finally {
        await db.destroy()
      }
    })

    it('TypeORM: a migration class runs the printed files statement by statement, up and down', async () => {
      const prefix = prefixes[1] as string
      printFiles(prefix)
      const folder = join(app, 'src', 'migrations')
      mkdirSync(folder, { recursive: true })
      // One class per version, as the page says: the next files, the next name.
      const classes: (new () => MigrationInterface)[] = []
      for (const { version } of mySqlMigrations()) {
        const name = `Txbox000${version}${1767225600000 + version}`
        const file = join(folder, `Txbox000${version}.ts`)
        writeFileSync(
          file,
          recipe('TypeORM', 'ts')
            .replace(/'1\.(up|down)\.sql'/g, `'${version}.$1.sql'`)
            .replace('Txbox00011767225600000', name),
        )
        const loaded = ((await import(file)) as Record<string, new () => MigrationInterface>)[name]
        if (loaded === undefined) throw new Error(`the TypeORM recipe exports no class ${name}`)
        classes.push(loaded)
      }
      const source = new DataSource({
        type: 'mysql',
        url: MYSQL_URL as string,
        migrations: classes,
        migrationsTableName: 'rt_typeorm_migrations',
      })
      await source.initialize()
      try {
        expect(await source.runMigrations()).toHaveLength(mySqlMigrations().length)
        expect(await tablesOf(prefix)).toEqual([
          `${prefix}inbox`,
          `${prefix}outbox`,
          `${prefix}outbox_keys`,
          `${prefix}schema_version`,
        ])
        await migrateFindsNothing(prefix)
        for (const _ of classes) await source.undoLastMigration()
        expect(await tablesOf(prefix)).toEqual([])
      } finally {
        await source.destroy()
      }
    })
  },
)
