// @ts-check
import { mutationRun } from './stryker.shared.mjs'

export default mutationRun({
  name: 'sqlite',
  mutate: [
    'packages/sqlite/src/**/*.ts',
    // The conformance target is the test's own harness; the barrel only re-exports.
    '!packages/sqlite/src/conformance-target.ts',
    '!packages/sqlite/src/index.ts',
  ],
})
