import { conformanceAndUnitTests } from './vitest.shared.ts'

// The unit tests of what the memory run mutates: the kernel (driven through memory
// primitives, faulted as a driver would fail), the memory transaction handle, the memory
// store's transaction driver (store.transaction), core's store.transaction machinery
// (AmbientTransactions, runOnDriver), and the reference store's rules that no conformance
// case reaches yet.
export default conformanceAndUnitTests('packages/conformance/test/memory.conformance.test.ts', [
  'packages/core/test/kernel.test.ts',
  'packages/core/test/kernel-operations.test.ts',
  'packages/core/test/memory-rules.test.ts',
  'packages/core/test/memory-store-transaction.test.ts',
  'packages/core/test/memory-transaction.test.ts',
  'packages/core/test/ambient-transactions.test.ts',
  'packages/core/test/run-on-driver.test.ts',
])
