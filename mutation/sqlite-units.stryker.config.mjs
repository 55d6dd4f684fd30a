// @ts-check
import sqlite from './sqlite.stryker.config.mjs'
import { mutationRun } from './stryker.shared.mjs'

// The sqlite run's mutants, tested by the conformance suite AND the adapter's unit tests
// (mutation/vitest.sqlite-units.config.ts): the second sqlite figure of docs/CONFORMANCE.md.
export default mutationRun({ name: 'sqlite-units', mutate: sqlite.mutate ?? [] })
