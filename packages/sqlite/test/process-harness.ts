import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import ts from 'typescript'

const packageDir = fileURLToPath(new URL('..', import.meta.url))
const coreSrc = fileURLToPath(new URL('../../core/src/', import.meta.url))
const sqliteSrc = fileURLToPath(new URL('../src/', import.meta.url))
const migrations = fileURLToPath(new URL('../migrations/', import.meta.url))

const sources = (directory: string): string[] =>
  readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name)
    if (entry.isDirectory()) return entry.name === 'nats' ? [] : sources(path)
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : []
  })

/**
 * Compiles core and this adapter (TypeScript sources, no build step needed) into plain
 * ESM under `outDir`, so that separate Node processes can run the real adapter code.
 * Returns the path of the adapter's entry module. The migration files go where the compiled
 * `migrate.js` looks for them, `../migrations/` as from `src/` and `dist/`.
 */
export const compileForProcesses = (outDir: string): string => {
  const emit = (from: string, to: string, rewrite: (code: string, file: string) => string) => {
    for (const file of sources(from)) {
      if (file.endsWith('conformance-target.ts')) continue
      const target = join(to, relative(from, file)).replace(/\.ts$/, '.js')
      const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
        compilerOptions: {
          module: ts.ModuleKind.ESNext,
          target: ts.ScriptTarget.ES2022,
          verbatimModuleSyntax: true,
        },
      })
      mkdirSync(dirname(target), { recursive: true })
      writeFileSync(target, rewrite(outputText, target))
    }
  }
  emit(coreSrc, join(outDir, 'core'), (code) => code)
  emit(sqliteSrc, join(outDir, 'sqlite'), (code, target) => {
    const core = relative(dirname(target), join(outDir, 'core', 'index.js'))
    return code
      .replaceAll("from '@txbox/core'", `from './${core}'`)
      .replaceAll("from 'better-sqlite3'", `from '${pathToFileURL(betterSqlite3Entry()).href}'`)
  })
  cpSync(migrations, join(outDir, 'migrations'), { recursive: true })
  return join(outDir, 'sqlite', 'index.js')
}

/** The better-sqlite3 entry this package resolves, for child processes outside the package tree. */
export const betterSqlite3Entry = (): string =>
  join(packageDir, 'node_modules', 'better-sqlite3', 'lib', 'index.js')
