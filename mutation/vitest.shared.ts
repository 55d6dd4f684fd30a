import { defineConfig } from 'vitest/config'
import workspace from '../vitest.config.ts'

/**
 * A vitest config that runs the given test files and nothing else, with the workspace's
 * aliases (tests run on TS sources).
 */
const onlyTheseTests = (testFiles: readonly string[]) =>
  defineConfig({
    resolve: workspace.resolve ?? {},
    test: {
      include: [...testFiles],
      testTimeout: workspace.test?.testTimeout ?? 120_000,
      hookTimeout: workspace.test?.hookTimeout ?? 180_000,
    },
  })

/**
 * One conformance test file alone. The mutation score must say what the conformance suite
 * catches, so no adapter unit test may kill a mutant here.
 */
export const conformanceOnly = (testFile: string) => onlyTheseTests([testFile])

/**
 * The conformance test file plus the package's own unit tests: the second figure, which
 * tells "out of the suite's reach" (options, driver error mapping, `connect`, `migrate`)
 * apart from "tested by nothing".
 */
export const conformanceAndUnitTests = (testFile: string, unitTestFiles: readonly string[]) =>
  onlyTheseTests([testFile, ...unitTestFiles])
