import { describe, expect, it } from 'vitest'
import {
  buildMigrationScripts,
  checkMigrationScriptOptions,
  formatMigrationScripts,
  type Migration,
  type MigrationScriptDialect,
  noMigrationScripts,
  splitStatements,
  ValidationError,
} from '../src/index.js'

const migrations: Migration[] = [
  {
    version: 1,
    name: 'initial',
    body: '-- {{prefix}} is the prefix; comments go\nCREATE TABLE {{prefix}}a (x int);\n\nCREATE INDEX {{prefix}}a_x ON {{prefix}}a (x);\n',
    down: '-- undo\nDROP TABLE {{prefix}}a;\n',
  },
  {
    version: 2,
    name: 'more',
    body: 'ALTER TABLE {{prefix}}a ADD y int',
    down: 'ALTER TABLE {{prefix}}a DROP y',
  },
]

const dialect: MigrationScriptDialect = {
  adapter: 'fake',
  namespace: 'table prefix "p_"',
  values: { prefix: 'p_' },
  createHistory: ['CREATE TABLE IF NOT EXISTS p_history (v int)'],
  recordVersion: (migration) => `INSERT INTO p_history VALUES (${migration.version})`,
  forgetVersion: (migration) => `DELETE FROM p_history WHERE v = ${migration.version}`,
  dropHistory: 'DROP TABLE p_history',
}

describe('migration scripts', () => {
  it('splits a file at the semicolons that end a line, dropping full-line comments', () => {
    expect(
      splitStatements(
        "-- head; with a semicolon;\nCREATE TABLE t (\n  -- inside;\n  a text DEFAULT 'x;y'\n);\nSELECT 1;  \n\nSELECT 2",
      ),
    ).toEqual(["CREATE TABLE t (\n  a text DEFAULT 'x;y'\n)", 'SELECT 1', 'SELECT 2'])
    expect(splitStatements('-- only a comment\n\n')).toEqual([])
  })

  it('up: history, the rendered statements, then the record, oldest first', () => {
    const scripts = buildMigrationScripts(migrations, dialect)
    expect(scripts.map((script) => [script.version, script.name, script.direction])).toEqual([
      [1, 'initial', 'up'],
      [2, 'more', 'up'],
    ])
    expect(scripts[0]?.statements).toEqual([
      'CREATE TABLE IF NOT EXISTS p_history (v int)',
      'CREATE TABLE p_a (x int)',
      'CREATE INDEX p_a_x ON p_a (x)',
      'INSERT INTO p_history VALUES (1)',
    ])
    expect(scripts[1]?.statements.at(-1)).toBe('INSERT INTO p_history VALUES (2)')
  })

  it("down: newest first, each forgetting its version; version 1's drops the history", () => {
    const scripts = buildMigrationScripts(migrations, dialect, { direction: 'down' })
    expect(scripts.map((script) => script.statements)).toEqual([
      ['ALTER TABLE p_a DROP y', 'DELETE FROM p_history WHERE v = 2'],
      ['DROP TABLE p_a', 'DROP TABLE p_history'],
    ])
  })

  it('prints only the versions asked for', () => {
    expect(buildMigrationScripts(migrations, dialect, { from: 2 }).map((script) => script.version)).toEqual([
      2,
    ])
    expect(
      buildMigrationScripts(migrations, dialect, { direction: 'down', to: 1 }).map(
        (script) => script.version,
      ),
    ).toEqual([1])
  })

  it('refuses a bad direction or range, and a version shipped without a down file', () => {
    const refused = (range: object, message: RegExp) => {
      expect(() => buildMigrationScripts(migrations, dialect, range)).toThrow(ValidationError)
      expect(() => buildMigrationScripts(migrations, dialect, range)).toThrow(message)
    }
    refused(
      { direction: 'sideways' },
      /^\[txbox\] \[fake\] direction must be 'up' or 'down', got "sideways"$/,
    )
    refused({ from: 0 }, /from must be a migration version from 1 to 2 \(the newest shipped\), got 0/)
    refused({ to: 3 }, /to must be a migration version from 1 to 2/)
    refused({ from: '1' }, /got "1"/)
    refused({ from: 1.5 }, /got 1\.5/)
    refused({ from: 2, to: 1 }, /from \(2\) must not be after to \(1\)/)
    const withoutDown = [migrations[0] as Migration, { version: 2, name: 'more', body: 'x' }]
    expect(() => buildMigrationScripts(withoutDown, dialect, { direction: 'down' })).toThrow(
      /migration 0002_more was shipped without a down file/,
    )
    // The up scripts do not need it.
    expect(buildMigrationScripts(withoutDown, dialect)).toHaveLength(2)
  })

  it('formats each script with a header naming store, version, name, direction and namespace', () => {
    const up = formatMigrationScripts(buildMigrationScripts(migrations, dialect, { to: 1 }))
    expect(up).toBe(
      [
        '-- txbox fake migration 0001_initial (up)',
        `-- For table prefix "p_". Printed by txbox-migrations: applies it and records version 1 in txbox's history, so a later migrate() skips it.`,
        'CREATE TABLE IF NOT EXISTS p_history (v int);',
        '',
        'CREATE TABLE p_a (x int);',
        '',
        'CREATE INDEX p_a_x ON p_a (x);',
        '',
        'INSERT INTO p_history VALUES (1);',
        '',
      ].join('\n'),
    )
    const down = formatMigrationScripts(buildMigrationScripts(migrations, dialect, { direction: 'down' }), {
      statementBreakpoints: true,
    })
    expect(down).toContain(
      '-- txbox fake migration 0002_more (down)\n-- For table prefix "p_". Printed by txbox-migrations: undoes it and removes version 2 from txbox\'s history.\nALTER TABLE p_a DROP y;\n--> statement-breakpoint\nDELETE FROM p_history WHERE v = 2;\n\n-- txbox fake migration 0001_initial (down)',
    )
    expect(down).toContain('nothing of txbox is left in this namespace')
  })

  it("checks an adapter's options: an object with only the keys it knows", () => {
    expect(() => checkMigrationScriptOptions('fake', undefined, ['tablePrefix'])).not.toThrow()
    expect(() =>
      checkMigrationScriptOptions('fake', { tablePrefix: 'a_', from: 1 }, ['tablePrefix']),
    ).not.toThrow()
    expect(() => checkMigrationScriptOptions('fake', { tablePrefx: 'a_' }, ['tablePrefix'])).toThrow(
      /^\[txbox\] \[fake\] migrationScripts has no option "tablePrefx": use tablePrefix, direction, from, to$/,
    )
    expect(() => checkMigrationScriptOptions('fake', 'a_', ['tablePrefix'])).toThrow(
      /migrationScripts options must be an object/,
    )
  })

  it('a store without DDL says so and what its migrate() creates', () => {
    expect(() => noMigrationScripts('kv', 'migrate() records a version key')).toThrow(ValidationError)
    expect(() => noMigrationScripts('kv', 'migrate() records a version key')).toThrow(
      /^\[txbox\] \[kv\] kv has no DDL to print for a migration tool: migrate\(\) records a version key\. Run store\.migrate\(\)/,
    )
  })
})
