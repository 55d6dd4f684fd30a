// @ts-check
import memory from './memory.stryker.config.mjs'
import { mutationRun } from './stryker.shared.mjs'

// The memory run's mutants, tested by the conformance suite AND core's unit tests of the
// kernel and the memory transaction (mutation/vitest.memory-units.config.ts): the second
// memory figure of docs/CONFORMANCE.md.
export default mutationRun({ name: 'memory-units', mutate: memory.mutate ?? [] })
