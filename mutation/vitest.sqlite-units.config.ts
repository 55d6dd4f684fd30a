import { conformanceAndUnitTests } from './vitest.shared.ts'

// Left out: `contention.test.ts` runs compiled copies of the sources in child processes
// (Stryker switches mutants inside the test process only), and `mutants.test.ts` reruns the
// whole suite once per hand-written SQL mutant, which Stryker's mutants never touch.
// The ORM tests are the only tests of `src/orm/**` (the suite never calls an ORM).
export default conformanceAndUnitTests('packages/sqlite/test/conformance.test.ts', [
  'packages/sqlite/test/classify.test.ts',
  'packages/sqlite/test/connect.test.ts',
  'packages/sqlite/test/errors.test.ts',
  'packages/sqlite/test/inbox-processor.test.ts',
  'packages/sqlite/test/migrate-journal.test.ts',
  'packages/sqlite/test/migrate.test.ts',
  'packages/sqlite/test/migration-scripts.test.ts',
  'packages/sqlite/test/options.test.ts',
  'packages/sqlite/test/orm-drizzle.test.ts',
  'packages/sqlite/test/orm-handles.test.ts',
  'packages/sqlite/test/orm-knex.test.ts',
  'packages/sqlite/test/orm-kysely.test.ts',
  'packages/sqlite/test/sqlite-store.test.ts',
  'packages/sqlite/test/transaction.test.ts',
])
