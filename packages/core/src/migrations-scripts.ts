import { ValidationError } from './errors.js'
import { type Migration, renderMigration } from './migrations.js'

/** `up` applies a migration, `down` undoes it. */
export type MigrationDirection = 'up' | 'down'

/** Which migrations {@link buildMigrationScripts} writes out. */
export interface MigrationScriptRange {
  /** `up` (default) prints versions oldest first; `down` prints the undo steps newest first. */
  readonly direction?: MigrationDirection | undefined
  /** The first version (default 1). */
  readonly from?: number | undefined
  /** The last version, inclusive (default: the newest shipped). */
  readonly to?: number | undefined
}

/**
 * How one SQL store writes its migrations out for another migration tool: the values of its
 * placeholders and the statements of its own history, so that a runtime `migrate()` after the
 * tool ran finds every printed version recorded and applies nothing.
 */
export interface MigrationScriptDialect {
  /** The store (`postgres`), for the header and error messages. */
  readonly adapter: string
  /** The namespace in words, for the header: `schema "app", table prefix "txbox_"`. */
  readonly namespace: string
  /** The values of the files' `{{placeholders}}`, already validated. */
  readonly values: Readonly<Record<string, string>>
  /** Idempotent statements that make the history table exist; every up script starts with them. */
  readonly createHistory: readonly string[]
  /** Records `migration` as applied, as `migrate()` records it; a no-op when it already is. */
  readonly recordVersion: (migration: Migration) => string
  /** Removes the record of `migration` (the end of its down script). */
  readonly forgetVersion: (migration: Migration) => string
  /** Drops the history table (the end of version 1's down script, which removes everything). */
  readonly dropHistory: string
}

/** One migration written out for another tool, one direction. */
export interface MigrationScript {
  readonly adapter: string
  readonly namespace: string
  readonly version: number
  readonly name: string
  readonly direction: MigrationDirection
  /**
   * The statements in order, each alone and without a trailing `;`: for a tool or driver that
   * takes one statement per call (mysql2 without `multipleStatements`, a Knex `raw`, a
   * TypeORM `queryRunner.query`). The last one records (up) or forgets (down) the version.
   */
  readonly statements: readonly string[]
}

/** Options of {@link formatMigrationScripts}. */
export interface MigrationScriptFormat {
  /**
   * Put `--> statement-breakpoint` between statements: Drizzle's migrator splits a custom
   * migration there and runs each part alone (better-sqlite3 and mysql2 take one statement
   * per call).
   */
  readonly statementBreakpoints?: boolean | undefined
}

/** The option names every `migrationScripts` takes besides the store's own (`tablePrefix`, ...). */
export const MIGRATION_RANGE_OPTIONS = ['direction', 'from', 'to'] as const

const versionName = (migration: Pick<Migration, 'version' | 'name'>): string =>
  `${String(migration.version).padStart(4, '0')}_${migration.name}`

/**
 * A migration file's statements: full-line `--` comments dropped (they explain the file and
 * name its placeholders; the printed header says where to read them), then split at each
 * `;` that ends a line. The shipped files keep to that shape, so no SQL parser is needed.
 */
export const splitStatements = (sql: string): string[] => {
  const statements: string[] = []
  let current: string[] = []
  const flush = () => {
    const text = current.join('\n').trim()
    if (text !== '') statements.push(text)
    current = []
  }
  for (const line of sql.split(/\r?\n/)) {
    if (line.trimStart().startsWith('--')) continue
    const end = /;\s*$/.exec(line)
    if (end === null) {
      current.push(line)
    } else {
      current.push(line.slice(0, end.index))
      flush()
    }
  }
  flush()
  return statements
}

/**
 * Checks the options of an adapter's `migrationScripts`: an object with only `known` keys
 * and the range ones (a misspelt `tablePrefx` would otherwise print the default namespace).
 */
export const checkMigrationScriptOptions = (
  adapter: string,
  options: unknown,
  known: readonly string[],
): void => {
  if (options === undefined) return
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw new ValidationError(adapter, 'migrationScripts options must be an object')
  const allowed = [...known, ...MIGRATION_RANGE_OPTIONS]
  const unknown = Object.keys(options).filter((key) => !allowed.includes(key))
  if (unknown.length > 0)
    throw new ValidationError(
      adapter,
      `migrationScripts has no option ${unknown.map((key) => JSON.stringify(key)).join(', ')}: use ${allowed.join(', ')}`,
    )
}

const checkVersion = (adapter: string, label: 'from' | 'to', value: unknown, latest: number): number => {
  if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > latest)
    throw new ValidationError(
      adapter,
      `${label} must be a migration version from 1 to ${latest} (the newest shipped), got ${JSON.stringify(value) ?? String(value)}`,
    )
  return value as number
}

/**
 * The scripts of `migrations[from..to]` in `direction`, rendered for one namespace: each up
 * script makes the history exist, runs the file's statements and records its version; each
 * down script runs the `.down` file's statements and forgets its version (version 1's drops
 * the history instead, leaving nothing of txbox in the namespace). Throws a
 * {@link ValidationError} for a bad range or a version shipped without a down file.
 */
export const buildMigrationScripts = (
  migrations: readonly Migration[],
  dialect: MigrationScriptDialect,
  range: MigrationScriptRange = {},
): MigrationScript[] => {
  const { adapter } = dialect
  const direction = range.direction ?? 'up'
  if (direction !== 'up' && direction !== 'down')
    throw new ValidationError(
      adapter,
      `direction must be 'up' or 'down', got ${JSON.stringify(direction) ?? String(direction)}`,
    )
  const latest = migrations.length
  const from = range.from === undefined ? 1 : checkVersion(adapter, 'from', range.from, latest)
  const to = range.to === undefined ? latest : checkVersion(adapter, 'to', range.to, latest)
  if (from > to)
    throw new ValidationError(
      adapter,
      `from (${from}) must not be after to (${to}): the range is the same for both directions; down prints it newest first`,
    )
  const selected = migrations.filter((migration) => migration.version >= from && migration.version <= to)
  const script = (migration: Migration, statements: string[]): MigrationScript => ({
    adapter,
    namespace: dialect.namespace,
    version: migration.version,
    name: migration.name,
    direction,
    statements,
  })
  const render = (body: string) => splitStatements(renderMigration(body, dialect.values))
  if (direction === 'up')
    return selected.map((migration) =>
      script(migration, [
        ...dialect.createHistory,
        ...render(migration.body),
        dialect.recordVersion(migration),
      ]),
    )
  return selected.reverse().map((migration) => {
    if (migration.down === undefined)
      throw new ValidationError(
        adapter,
        `migration ${versionName(migration)} was shipped without a down file: report it to txbox`,
      )
    const last = migration.version === 1 ? dialect.dropHistory : dialect.forgetVersion(migration)
    return script(migration, [...render(migration.down), last])
  })
}

/**
 * One script as a text to paste into a migration file: a header comment (store, version,
 * name, direction, namespace) and the statements, each ending with `;`.
 */
export const formatMigrationScript = (
  script: MigrationScript,
  format: MigrationScriptFormat = {},
): string => {
  const what =
    script.direction === 'up'
      ? `applies it and records version ${script.version} in txbox's history, so a later migrate() skips it`
      : script.version === 1
        ? "undoes it and drops txbox's history: nothing of txbox is left in this namespace"
        : `undoes it and removes version ${script.version} from txbox's history`
  const header = [
    `-- txbox ${script.adapter} migration ${versionName(script)} (${script.direction})`,
    `-- For ${script.namespace}. Printed by txbox-migrations: ${what}.`,
  ]
  const separator = format.statementBreakpoints ? ';\n--> statement-breakpoint\n' : ';\n\n'
  return `${header.join('\n')}\n${script.statements.join(separator)};\n`
}

/** Several scripts as one text, a blank line between them. */
export const formatMigrationScripts = (
  scripts: readonly MigrationScript[],
  format: MigrationScriptFormat = {},
): string => scripts.map((script) => formatMigrationScript(script, format)).join('\n')

/**
 * The `migrationScripts` of a store without DDL (MongoDB, Redis, DynamoDB): always throws a
 * {@link ValidationError} that says what the store's `migrate()` creates instead.
 */
export const noMigrationScripts = (adapter: string, migrateCreates: string): never => {
  throw new ValidationError(
    adapter,
    `${adapter} has no DDL to print for a migration tool: ${migrateCreates}. Run store.migrate() when you deploy: it is idempotent and safe to run from several processes at once (txbox-migrations print is for postgres, mysql and sqlite)`,
  )
}
