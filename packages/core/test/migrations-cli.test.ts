import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { type AdapterImporter, runMigrationsCli } from '../src/migrations-cli.js'
import { formatMigrationScripts, type MigrationScript } from '../src/migrations-scripts.js'

/**
 * The adapters' TypeScript sources, through the workspace aliases (no build needed). Loaded by
 * a name in a variable: core does not depend on the adapters (they depend on it), so its
 * typecheck must not resolve them.
 */
const sources: AdapterImporter = (adapter) => import(adapter)

type Scripts = (options: Record<string, unknown>) => MigrationScript[]
const scriptsOf = async (adapter: string): Promise<Scripts> =>
  ((await sources(adapter)) as { migrationScripts: Scripts }).migrationScripts
const sqliteScripts = await scriptsOf('@txbox/sqlite')
const postgresScripts = await scriptsOf('@txbox/postgres')
const mySqlScripts = await scriptsOf('@txbox/mysql')

const run = async (argv: string[], importer: AdapterImporter = sources) => {
  let stdout = ''
  let stderr = ''
  const code = await runMigrationsCli(
    argv,
    { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text) },
    importer,
  )
  return { code, stdout, stderr }
}

describe('txbox-migrations print', () => {
  it("prints the adapter's scripts for the namespace, direction and range asked for", async () => {
    expect(await run(['print', '--store', 'sqlite', '--prefix', 'app_'])).toEqual({
      code: 0,
      stdout: formatMigrationScripts(sqliteScripts({ tablePrefix: 'app_' })),
      stderr: '',
    })
    const down = await run(['print', '--store', 'postgres', '--schema', 'app', '--down', '--from', '2'])
    expect(down.code).toBe(0)
    expect(down.stdout).toBe(
      formatMigrationScripts(postgresScripts({ schema: 'app', direction: 'down', from: 2 })),
    )
    // Down runs newest first: 0005 (the unkeyed claim index), 0004 (ordering keys), 0003 (the
    // wakeup flags), then 0002, and stops at --from.
    expect(down.stdout).toMatch(
      /^-- txbox postgres migration 0005_unkeyed_claimable \(down\)\n-- For schema "app"/,
    )
    expect(down.stdout.indexOf('-- txbox postgres migration 0004_ordering (down)\n')).toBeGreaterThan(
      down.stdout.indexOf('0005_unkeyed_claimable (down)'),
    )
    expect(down.stdout).toContain('-- txbox postgres migration 0003_wakeup (down)\n')
    expect(down.stdout).toContain('-- txbox postgres migration 0002_inbox_id_only (down)\n')
    expect(down.stdout).not.toContain('0001')
    const mysql = await run([
      'print',
      '--store',
      'mysql',
      '--server-version',
      '8.0.36',
      '--to',
      '1',
      '--statement-breakpoints',
    ])
    expect(mysql.stdout).toBe(
      formatMigrationScripts(mySqlScripts({ serverVersion: '8.0.36', to: 1 }), {
        statementBreakpoints: true,
      }),
    )
    expect(mysql.stdout).toContain('utf8mb4_0900_bin')
    expect(mysql.stdout).toContain('--> statement-breakpoint')
  })

  it('answers a store without DDL with what its migrate() creates (exit 2)', async () => {
    for (const store of ['mongodb', 'redis', 'dynamodb']) {
      const result = await run(['print', '--store', store])
      expect(result.code).toBe(2)
      expect(result.stdout).toBe('')
      expect(result.stderr).toMatch(new RegExp(`^\\[txbox\\] \\[${store}\\] ${store} has no DDL to print`))
    }
    expect((await run(['print', '--store', 'mongodb'])).stderr).toContain('<prefix>outbox')
    expect((await run(['print', '--store', 'dynamodb'])).stderr).toContain('0001_create_table.json')
  })

  it('refuses bad usage with exit 2 and a message that says what to change', async () => {
    const refused = async (argv: string[], message: RegExp) => {
      const result = await run(argv)
      expect(result.code, result.stderr).toBe(2)
      expect(result.stdout).toBe('')
      expect(result.stderr).toMatch(message)
    }
    await refused([], /^\[txbox\] \[migrations\] no command: the one command is "print"/)
    await refused(['apply', '--store', 'sqlite'], /unknown command "apply"/)
    await refused(
      ['print'],
      /--store must be one of sqlite, postgres, mysql, mongodb, redis, dynamodb, got nothing/,
    )
    await refused(['print', '--store', 'oracle'], /got "oracle"/)
    await refused(['print', '--store', 'sqlite', '--bogus'], /Unknown option '--bogus'/)
    await refused(
      ['print', '--store', 'sqlite', '--schema', 'app'],
      /\[sqlite\] migrationScripts has no option "schema"/,
    )
    await refused(
      ['print', '--store', 'sqlite', '--from', 'two'],
      /from must be a migration version .* got "two"/,
    )
    await refused(
      ['print', '--store', 'mysql'],
      /\[mysql\] serverVersion is required: what SELECT VERSION\(\) answers/,
    )
    await refused(
      ['print', '--store', 'mysql', '--server-version', '5.7.44'],
      /serverVersion: MySQL 5\.7\.44 is not supported/,
    )
    await refused(
      ['print', '--store', 'postgres', '--prefix', 'no-dash'],
      /\[postgres\] tablePrefix must match/,
    )
  })

  it('says which package to install when the adapter is missing, or too old to print', async () => {
    const missing: AdapterImporter = async () => {
      throw Object.assign(new Error("Cannot find package '@txbox/postgres'"), {
        code: 'ERR_MODULE_NOT_FOUND',
      })
    }
    const result = await run(['print', '--store', 'postgres'], missing)
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(
      /--store postgres needs @txbox\/postgres and its driver pg .*: npm i @txbox\/postgres pg/,
    )
    const old = await run(['print', '--store', 'postgres'], async () => ({ connectPostgres: () => {} }))
    expect(old.code).toBe(2)
    expect(old.stderr).toMatch(/@txbox\/postgres has no migrationScripts\(\)/)
    const broken = await run(['print', '--store', 'postgres'], async () => {
      throw new Error('boom')
    })
    expect(broken).toEqual({ code: 1, stdout: '', stderr: '[txbox] [migrations] boom\n' })
  })

  it('prints its help', async () => {
    const result = await run(['--help'])
    expect(result.code).toBe(0)
    expect(result.stdout).toMatch(/^Usage: txbox-migrations print --store/)
  })
})

/**
 * The built bin, as a user runs it from their app's folder (build first:
 * pnpm turbo run build --filter=@txbox/core... --filter=@txbox/sqlite... --filter=@txbox/postgres...).
 * The repository root stands for the app: its node_modules holds the adapters.
 */
describe('the txbox-migrations bin', () => {
  const bin = fileURLToPath(new URL('../bin/txbox-migrations.js', import.meta.url))
  const root = fileURLToPath(new URL('../../../', import.meta.url))
  const exec = promisify(execFile)

  it('prints from the adapter installed in the working directory', async () => {
    const { stdout } = await exec(process.execPath, [bin, 'print', '--store', 'sqlite', '--prefix', 'app_'], {
      cwd: root,
    })
    expect(stdout).toBe(formatMigrationScripts(sqliteScripts({ tablePrefix: 'app_' })))
    const postgres = await exec(process.execPath, [bin, 'print', '--store', 'postgres', '--down'], {
      cwd: root,
    })
    expect(postgres.stdout).toBe(formatMigrationScripts(postgresScripts({ direction: 'down' })))
  })

  it('exits 2 with the message on stderr', async () => {
    const failed = await exec(process.execPath, [bin, 'print', '--store', 'redis'], { cwd: root }).then(
      () => undefined,
      (error: { code: number; stderr: string; stdout: string }) => error,
    )
    expect(failed?.code).toBe(2)
    expect(failed?.stdout).toBe('')
    expect(failed?.stderr).toMatch(/^\[txbox\] \[redis\] redis has no DDL to print/)
  })
})
