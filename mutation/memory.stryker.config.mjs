// @ts-check
import { mutationRun } from './stryker.shared.mjs'

export default mutationRun({
  name: 'memory',
  // The kernel holds the contract's rules (validation, errors, dedupe, order, sweeps) for
  // every adapter; the suite certifies them through the memory store, so they are measured
  // here, with core's store.transaction machinery (AmbientTransactions, runOnDriver) that
  // every adapter's store.transaction runs on.
  mutate: [
    'packages/core/src/memory/**/*.ts',
    'packages/core/src/kernel/**/*.ts',
    'packages/core/src/transactions/**/*.ts',
  ],
})
