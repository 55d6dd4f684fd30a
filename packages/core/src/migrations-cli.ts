import { createRequire } from 'node:module'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { TxboxError, ValidationError } from './errors.js'
import { formatMigrationScripts, type MigrationScript } from './migrations-scripts.js'
import { STORE_KINDS, type StoreKind, storeRegistration } from './store-registry.js'

/** The component name in this CLI's messages. */
const CLI = 'migrations'

export const MIGRATIONS_USAGE = `Usage: txbox-migrations print --store <${STORE_KINDS.join('|')}> [options]

Prints txbox's versioned schema migrations as SQL for your own migration tool (Knex, TypeORM,
Prisma Migrate, Drizzle Kit, Flyway, Liquibase): one block per migration, each opening with a
comment that names its version, name and direction, the up blocks ending with the statement
that records the version in txbox's history table (a later migrate() then applies nothing).
Only the adapter of --store (and its driver) needs to be installed.

Options:
  --store <kind>            postgres, mysql or sqlite (mongodb, redis and dynamodb have no DDL)
  --prefix <prefix>         the store's tablePrefix (default txbox_)
  --schema <schema>         postgres: the schema (default public)
  --server-version <text>   mysql: what SELECT VERSION() answers (10.11.6-MariaDB, 8.0.36)
  --down                    the steps that undo the migrations, newest first
  --from <n> --to <m>       only versions n..m (default: every shipped version)
  --statement-breakpoints   "--> statement-breakpoint" between statements (Drizzle Kit)
  -h, --help                this text

See docs/MIGRATIONS.md for a recipe per tool.`

/** Where the CLI writes. */
export interface MigrationsCliIo {
  readonly stdout: (text: string) => void
  readonly stderr: (text: string) => void
}

/** Loads the adapter named by the registry; tests inject one. */
export type AdapterImporter = (adapter: string) => Promise<unknown>

const moduleNotFound = (error: unknown): boolean => {
  const code = (error as { code?: unknown } | null)?.code
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
}

/**
 * Loads the adapter the way the user's app would: resolved from the working directory (the
 * app's own `node_modules`, which is where a strict pnpm layout puts it), else from here.
 */
export const importFromWorkingDirectory: AdapterImporter = async (adapter) => {
  let resolved: string | undefined
  try {
    resolved = createRequire(join(process.cwd(), 'package.json')).resolve(adapter)
  } catch (error) {
    if (!moduleNotFound(error)) throw error
  }
  return resolved === undefined ? import(adapter) : import(pathToFileURL(resolved).href)
}

/** What the CLI hands to the adapter's `migrationScripts`. */
type MigrationScriptsFunction = (options: Record<string, unknown>) => readonly MigrationScript[]

const loadMigrationScripts = async (
  kind: StoreKind,
  importer: AdapterImporter,
): Promise<MigrationScriptsFunction> => {
  const { adapter, driver } = storeRegistration(kind)
  let module: Record<string, unknown>
  try {
    module = (await importer(adapter)) as Record<string, unknown>
  } catch (error) {
    if (!moduleNotFound(error)) throw error
    throw new ValidationError(
      CLI,
      `--store ${kind} needs ${adapter} and its driver ${driver} installed where you run txbox-migrations (your app's folder): npm i ${adapter} ${driver}`,
      { cause: error },
    )
  }
  const found = module.migrationScripts
  if (typeof found !== 'function')
    throw new ValidationError(
      CLI,
      `${adapter} has no migrationScripts(): install a version of ${adapter} that matches @txbox/core`,
    )
  return found as MigrationScriptsFunction
}

/** A version flag: a number when it looks like one, else the text, which the adapter refuses by name. */
const versionOption = (value: string | undefined): number | string | undefined =>
  value === undefined ? undefined : /^\d+$/.test(value) ? Number(value) : value

/**
 * Runs `txbox-migrations` with `argv` (without node and the script); answers the exit code:
 * 0 printed, 2 bad usage or input (the message says what to change), 1 anything else.
 */
export const runMigrationsCli = async (
  argv: readonly string[],
  io: MigrationsCliIo = {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
  },
  importer: AdapterImporter = importFromWorkingDirectory,
): Promise<number> => {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        store: { type: 'string' },
        prefix: { type: 'string' },
        schema: { type: 'string' },
        'server-version': { type: 'string' },
        down: { type: 'boolean' },
        from: { type: 'string' },
        to: { type: 'string' },
        'statement-breakpoints': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    })
    if (values.help) {
      io.stdout(`${MIGRATIONS_USAGE}\n`)
      return 0
    }
    const [command, ...extra] = positionals
    if (command !== 'print' || extra.length > 0)
      throw new ValidationError(
        CLI,
        `${command === undefined ? 'no command' : `unknown command ${JSON.stringify(positionals.join(' '))}`}: the one command is "print"`,
      )
    const kind = values.store
    if (kind === undefined || !(STORE_KINDS as readonly string[]).includes(kind))
      throw new ValidationError(
        CLI,
        `--store must be one of ${STORE_KINDS.join(', ')}, got ${kind === undefined ? 'nothing' : JSON.stringify(kind)}`,
      )
    const migrationScripts = await loadMigrationScripts(kind as StoreKind, importer)
    const options = Object.fromEntries(
      Object.entries({
        tablePrefix: values.prefix,
        schema: values.schema,
        serverVersion: values['server-version'],
        direction: values.down ? 'down' : undefined,
        from: versionOption(values.from),
        to: versionOption(values.to),
      }).filter(([, value]) => value !== undefined),
    )
    const scripts = migrationScripts(options)
    io.stdout(formatMigrationScripts(scripts, { statementBreakpoints: values['statement-breakpoints'] }))
    return 0
  } catch (error) {
    // parseArgs' own errors (an unknown flag, a missing value) are usage errors too.
    const usage =
      error instanceof ValidationError ||
      (error as { code?: unknown })?.code?.toString().startsWith('ERR_PARSE_ARGS')
    const message =
      error instanceof TxboxError
        ? error.message
        : `[txbox] [${CLI}] ${(error as Error)?.message ?? String(error)}`
    io.stderr(`${message}\n${usage ? 'Run txbox-migrations --help for the options.\n' : ''}`)
    return usage ? 2 : 1
  }
}
