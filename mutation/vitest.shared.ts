import { defineConfig } from 'vitest/config'
import workspace from '../vitest.config.ts'

/**
 * A vitest config that runs one conformance test file and nothing else, with the workspace's
 * aliases (tests run on TS sources). The mutation score must say what the conformance suite
 * catches, so no adapter unit test may kill a mutant here.
 */
export const conformanceOnly = (testFile: string) =>
  defineConfig({
    resolve: workspace.resolve ?? {},
    test: {
      include: [testFile],
      testTimeout: workspace.test?.testTimeout ?? 120_000,
      hookTimeout: workspace.test?.hookTimeout ?? 180_000,
    },
  })
