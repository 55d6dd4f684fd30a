import { readdirSync, readFileSync } from 'node:fs'
import type { Clock } from './clock.js'

/**
 * One schema step, read from a file `migrations/<NNNN>_<name>.<sql|json>` of an adapter
 * package: the files are the single source of truth, `migrate()` applies them and users of
 * their own migration tool apply the same files (placeholders such as `{{prefix}}`
 * substituted with {@link renderMigration}).
 */
export interface Migration {
  /** The number of the file (`0002_inbox_id_only.sql`: 2). Versions run 1, 2, 3... without gaps. */
  readonly version: number
  /** The file name without number and extension (`inbox_id_only`). */
  readonly name: string
  /** The file's text: DDL, or JSON for a store without DDL. */
  readonly body: string
  /**
   * The text of `<NNNN>_<name>.down.<ext>` beside it, when there is one: what undoes this
   * step, for users of their own migration tool. `migrate()` never runs it.
   */
  readonly down?: string
}

/**
 * The one naming scheme of migration files: four digits, `_`, a snake_case name, `.down` for
 * the step that undoes it, `.sql` or `.json`.
 */
export const MIGRATION_FILE_NAME = /^(\d{4})_([a-z0-9]+(?:_[a-z0-9]+)*)(\.down)?\.(sql|json)$/

/**
 * Reads an adapter's migration folder (other files, such as a README, are ignored). Throws
 * when two files share a version or a version is missing: a gap means a file was lost. A
 * down file belongs to the up file of its version and name; one without it (a renamed or
 * lost up file) throws too.
 */
export const loadMigrations = (directory: URL): readonly Migration[] => {
  const folder = directory.href.endsWith('/') ? directory : new URL(`${directory.href}/`)
  const files = readdirSync(folder, { withFileTypes: true })
    .filter((entry) => entry.isFile() && MIGRATION_FILE_NAME.test(entry.name))
    .map(({ name: file }) => {
      const [, version, name, down] = MIGRATION_FILE_NAME.exec(file) as RegExpExecArray
      return {
        file,
        version: Number(version),
        name: name as string,
        down: down !== undefined,
        body: readFileSync(new URL(file, folder), 'utf8'),
      }
    })
  const downs = new Map<number, (typeof files)[number]>()
  for (const file of files.filter((candidate) => candidate.down)) {
    const other = downs.get(file.version)
    if (other !== undefined)
      throw new Error(
        `migrations ${other.file} and ${file.file} in ${folder.pathname} both undo version ${file.version}`,
      )
    downs.set(file.version, file)
  }
  const migrations = files
    .filter((file) => !file.down)
    .sort((a, b) => a.version - b.version)
    .map(({ version, name, body }): Migration => {
      const down = downs.get(version)
      if (down === undefined) return { version, name, body }
      downs.delete(version)
      if (down.name !== name)
        throw new Error(
          `migration ${down.file} in ${folder.pathname} must be named after its up file: ${String(version).padStart(4, '0')}_${name}.down.<ext>`,
        )
      return { version, name, body, down: down.body }
    })
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new Error(
        `migration files in ${folder.pathname} must be numbered 0001, 0002, ... without gaps or repeats; found version ${migration.version} at position ${index + 1}`,
      )
    }
  })
  const orphan = [...downs.values()][0]
  if (orphan !== undefined)
    throw new Error(`migration ${orphan.file} in ${folder.pathname} undoes a version that has no up file`)
  return migrations
}

/** Substitutes `{{name}}` placeholders; every placeholder in the text must have a value. */
export const renderMigration = (body: string, values: Readonly<Record<string, string>>): string =>
  body.replace(/\{\{([a-z_]+)\}\}/g, (placeholder, name: string) => {
    const value = values[name]
    if (value === undefined) throw new Error(`migration placeholder ${placeholder} has no value`)
    return value
  })

/** What a store provides to {@link applyMigrations}: its own lock and its own history. */
export interface MigrationHistory {
  /**
   * Runs `apply` holding the store's migration lock (an advisory lock, `GET_LOCK`, `BEGIN
   * IMMEDIATE`, a lock document...), so that two processes migrating at once both succeed:
   * the second waits, then finds nothing to do. Creates the history where it is missing.
   */
  locked<T>(apply: () => Promise<T>): Promise<T>
  /** The versions recorded as applied (inside the lock). */
  appliedVersions(): Promise<Iterable<number>>
  /** Applies one step. Each step is idempotent or runs in the lock's transaction. */
  apply(migration: Migration): Promise<void>
  /** Records one step as applied at `appliedAt`. */
  record(migration: Migration, appliedAt: Date): Promise<void>
}

/**
 * The versions a history that records only the highest version applied stands for: 1..n.
 * For stores without a history table (a schema document, a key, an item), whose steps only
 * ever run in order.
 */
export const versionsThrough = (highest: number): number[] =>
  Array.from({ length: Math.max(0, Math.trunc(highest)) }, (_, index) => index + 1)

/** The migrations whose version is not among `applied`, in order. */
const unapplied = (applied: Iterable<number>, migrations: readonly Migration[]): Migration[] => {
  const done = new Set(applied)
  return migrations.filter((migration) => !done.has(migration.version))
}

/**
 * Applies, in order and under the store's lock, every migration whose version is not
 * recorded, recording each after it ran; answers the versions applied now. The one
 * migration mechanism of every adapter: only the lock, the history and how a step is
 * applied are the store's.
 */
export const applyMigrations = async (
  history: MigrationHistory,
  migrations: readonly Migration[],
  clock: Clock,
): Promise<number[]> =>
  history.locked(async () => {
    const steps = unapplied(await history.appliedVersions(), migrations)
    for (const step of steps) {
      await history.apply(step)
      await history.record(step, clock())
    }
    return steps.map((step) => step.version)
  })

/** {@link MigrationHistory} of a store whose driver is synchronous (better-sqlite3). */
export interface SyncMigrationHistory {
  locked<T>(apply: () => T): T
  appliedVersions(): Iterable<number>
  apply(migration: Migration): void
  record(migration: Migration, appliedAt: Date): void
}

/**
 * {@link applyMigrations} without an await: for a synchronous driver the whole migration
 * runs in one turn of the event loop, so nothing else of the process can run inside the
 * lock's transaction (or wait synchronously for a lock the awaiting migration holds).
 */
export const applyMigrationsSync = (
  history: SyncMigrationHistory,
  migrations: readonly Migration[],
  clock: Clock,
): number[] =>
  history.locked(() => {
    const steps = unapplied(history.appliedVersions(), migrations)
    for (const step of steps) {
      history.apply(step)
      history.record(step, clock())
    }
    return steps.map((step) => step.version)
  })
