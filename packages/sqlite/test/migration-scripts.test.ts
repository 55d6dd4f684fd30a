import { formatReport, runConformance } from '@txbox/conformance'
import { formatMigrationScripts, ManualClock, ValidationError } from '@txbox/core'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { createConformanceTarget } from '../src/conformance-target.js'
import { migrationScripts, sqliteMigrations } from '../src/migrate.js'
import { createSqliteStore } from '../src/sqlite-store.js'

type Db = Database.Database

/** Applies the printed text as a user's tool would: the whole file, comments included, at once. */
const applyPrinted = (db: Db, options: Parameters<typeof migrationScripts>[0]): void => {
  db.exec(formatMigrationScripts(migrationScripts(options)))
}

/** Everything in the catalog whose name starts with `prefix`, the prefix replaced by `<p>`. */
const catalog = (db: Db, prefix: string) =>
  db
    .prepare<[number, string], { type: string; name: string; tbl_name: string; sql: string | null }>(
      'SELECT type, name, tbl_name, sql FROM sqlite_master WHERE substr(name, 1, ?) = ? ORDER BY type, name',
    )
    .all(prefix.length, prefix)
    .map((row) => ({
      type: row.type,
      name: row.name.replace(prefix, '<p>'),
      table: row.tbl_name.replace(prefix, '<p>'),
      sql: (row.sql ?? '').replaceAll(prefix, '<p>').replace(/\s+/g, ' '),
    }))

const history = (db: Db, prefix: string) =>
  db.prepare(`SELECT version, applied_at FROM ${prefix}schema_version ORDER BY version`).all() as {
    version: number
    applied_at: number
  }[]

const latest = sqliteMigrations().length

describe('sqlite migrationScripts', () => {
  it('ships a down file for every migration', () => {
    expect(sqliteMigrations().filter((migration) => migration.down === undefined)).toEqual([])
  })

  it('prints DDL that builds the very schema migrate() builds, and records every version', async () => {
    const db = new Database(':memory:')
    try {
      applyPrinted(db, { tablePrefix: 'printed_' })
      await createSqliteStore({ db, tablePrefix: 'runtime_' }).migrate()
      const printed = catalog(db, 'printed_')
      expect(printed.map((entry) => entry.name)).toContain('<p>inbox_status')
      expect(printed).toEqual(catalog(db, 'runtime_'))
      expect(history(db, 'printed_').map((row) => row.version)).toEqual(
        history(db, 'runtime_').map((row) => row.version),
      )
    } finally {
      db.close()
    }
  })

  it('certifies: the conformance suite passes on tables built only by the printed DDL', async () => {
    let applied = 0
    const target = createConformanceTarget({
      applySchema: ({ db, tablePrefix }) => {
        applyPrinted(db, { tablePrefix })
        applied++
      },
    })
    const report = await runConformance(target)
    expect(applied).toBeGreaterThan(0)
    expect(report.summary.failed + report.summary.errors, formatReport(report)).toBe(0)
    expect(report.ok, formatReport(report)).toBe(true)
  })

  it('leaves migrate() nothing to apply after the printed up scripts', async () => {
    const db = new Database(':memory:')
    try {
      applyPrinted(db, { tablePrefix: 'app_' })
      const before = history(db, 'app_')
      expect(before.map((row) => row.version)).toEqual(Array.from({ length: latest }, (_, i) => i + 1))
      const schema = catalog(db, 'app_')
      // A step migrate() applied would be recorded at this clock's time.
      const clock = new ManualClock(new Date('2001-02-03T04:05:06.007Z'))
      await createSqliteStore({ db, tablePrefix: 'app_', clock: clock.now }).migrate()
      expect(history(db, 'app_')).toEqual(before)
      expect(catalog(db, 'app_')).toEqual(schema)
    } finally {
      db.close()
    }
  })

  it('the printed down removes every table, index, counter and the history of its prefix, and nothing else', async () => {
    const db = new Database(':memory:')
    try {
      await createSqliteStore({ db, tablePrefix: 'neighbour_' }).migrate()
      const neighbour = catalog(db, 'neighbour_')
      applyPrinted(db, { tablePrefix: 'app_' })
      const store = createSqliteStore({ db, tablePrefix: 'app_' })
      // Rows in both tables, so AUTOINCREMENT has counters in sqlite_sequence to leave behind.
      await store.outbox.findOrCreate({ eventId: 'e1', subject: 's', payload: '{}' })
      await store.inbox.findOrCreate({ eventId: 'e1', subject: 's', payload: '{}' })
      const counters = () =>
        db.prepare("SELECT name FROM sqlite_sequence WHERE substr(name, 1, 4) = 'app_'").pluck().all()
      expect(counters()).toHaveLength(2)
      applyPrinted(db, { tablePrefix: 'app_', direction: 'down' })
      expect(catalog(db, 'app_')).toEqual([])
      expect(counters()).toEqual([])
      expect(catalog(db, 'neighbour_')).toEqual(neighbour)
    } finally {
      db.close()
    }
  })

  it('steps one version down and up again', () => {
    const db = new Database(':memory:')
    try {
      applyPrinted(db, { tablePrefix: 'app_' })
      const uniqueStreamIndex = () =>
        catalog(db, 'app_').filter((entry) => entry.name === '<p>inbox_stream_seq').length
      expect(uniqueStreamIndex()).toBe(0)
      const outboxColumns = () =>
        db.prepare("SELECT name FROM pragma_table_info('app_outbox') ORDER BY cid").pluck().all()
      expect(outboxColumns()).toContain('ordering_key')
      const triggers = () =>
        db.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name").pluck().all()
      expect(triggers()).toEqual([
        'app_outbox_key_delete',
        'app_outbox_key_join',
        'app_outbox_key_leave',
        'app_outbox_key_return',
      ])
      const returnTrigger = () =>
        db
          .prepare("SELECT sql FROM sqlite_master WHERE name = 'app_outbox_key_return'")
          .pluck()
          .get() as string
      expect(returnTrigger()).toContain("status = 'publishing'")
      applyPrinted(db, { tablePrefix: 'app_', direction: 'down', from: 5, to: 5 })
      expect(history(db, 'app_').map((row) => row.version)).toEqual([1, 2, 3, 4])
      expect(triggers()).toHaveLength(4)
      expect(returnTrigger()).not.toContain("status = 'publishing'")
      applyPrinted(db, { tablePrefix: 'app_', direction: 'down', from: 4, to: 4 })
      expect(history(db, 'app_').map((row) => row.version)).toEqual([1, 2, 3])
      expect(outboxColumns()).not.toContain('key_prev')
      expect(triggers()).toEqual([])
      expect(catalog(db, 'app_').map((entry) => entry.name)).toEqual(
        expect.arrayContaining(['<p>outbox_claimable', '<p>outbox_key_holds']),
      )
      applyPrinted(db, { tablePrefix: 'app_', direction: 'down', from: 3, to: 3 })
      expect(history(db, 'app_').map((row) => row.version)).toEqual([1, 2])
      expect(outboxColumns()).not.toContain('ordering_key')
      expect(outboxColumns()).not.toContain('key_seq')
      expect(catalog(db, 'app_').map((entry) => entry.name)).not.toContain('<p>outbox_keys')
      applyPrinted(db, { tablePrefix: 'app_', direction: 'down', from: 2, to: 2 })
      expect(history(db, 'app_').map((row) => row.version)).toEqual([1])
      expect(uniqueStreamIndex()).toBe(1)
      applyPrinted(db, { tablePrefix: 'app_', from: 2 })
      expect(history(db, 'app_').map((row) => row.version)).toEqual([1, 2, 3, 4, 5])
      expect(uniqueStreamIndex()).toBe(0)
      expect(outboxColumns()).toContain('key_seq')
      expect(outboxColumns()).toContain('key_prev')
      expect(triggers()).toHaveLength(4)
      expect(returnTrigger()).toContain("status = 'publishing'")
    } finally {
      db.close()
    }
  })

  it('refuses what it cannot print, naming the option', () => {
    expect(() => migrationScripts({ schema: 'public' } as never)).toThrow(ValidationError)
    expect(() => migrationScripts({ schema: 'public' } as never)).toThrow(
      /^\[txbox\] \[sqlite\] migrationScripts has no option "schema": use tablePrefix, direction, from, to$/,
    )
    expect(() => migrationScripts({ tablePrefix: 'bad-prefix' })).toThrow(/tablePrefix must match/)
    expect(() => migrationScripts({ to: latest + 1 })).toThrow(
      new RegExp(`to must be a migration version from 1 to ${latest}`),
    )
  })
})
