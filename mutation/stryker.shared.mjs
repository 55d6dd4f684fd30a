// @ts-check
/**
 * StrykerJS settings shared by the two mutation runs. Each run mutates one store's sources
 * and runs only that store's conformance test file, so the score measures the suite alone.
 * Stryker works in a copy of the repo (`.stryker-tmp/`), never in the working tree, so a
 * run does not disturb anyone editing or testing at the same time.
 *
 * @param {{ name: string, mutate: string[] }} run
 * @returns {import('@stryker-mutator/api/core').PartialStrykerOptions}
 */
export const mutationRun = ({ name, mutate }) => ({
  packageManager: 'pnpm',
  testRunner: 'vitest',
  plugins: ['@stryker-mutator/vitest-runner'],
  vitest: { configFile: `mutation/vitest.${name}.config.ts` },
  coverageAnalysis: 'perTest',
  mutate,
  // The root tsconfig references every package, so packages stay; the rest is not needed.
  ignorePatterns: ['.stryker-tmp', 'docs', 'examples', '**/dist', 'conformance-report.json'],
  tempDirName: `.stryker-tmp/${name}`,
  cleanTempDir: true,
  // The machine is shared: two workers at most (override with --concurrency).
  concurrency: 2,
  timeoutMS: 30_000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: `reports/mutation/${name}/index.html` },
  jsonReporter: { fileName: `reports/mutation/${name}/mutation.json` },
  thresholds: { high: 90, low: 80, break: null },
})
