import { runConformance } from './runner.js'
import type { ConformanceTarget, ServerConnection } from './target.js'

/**
 * A hand-written mutant of an adapter's statements: the SQL or Lua text that a mutation tool
 * such as StrykerJS cannot edit, because to it the statement is one string literal. An
 * adapter proves its conformance run kills each mutant by running the named cases against a
 * store whose statements go through {@link statementRewriter} (see each adapter's
 * `test/mutants.test.ts` and the `rewriteStatement` option of its conformance target).
 */
export interface StatementMutant {
  /** A short name for tables and test titles, e.g. `claim: lease expiry branch dropped`. */
  readonly id: string
  /** The adapter's names of the statements the mutant edits (one, or every user of a shared fragment). */
  readonly statements: readonly string[]
  /** The exact text replaced: it must occur exactly once in each named statement and in no other. */
  readonly find: string
  readonly replace: string
  /** The cases that must fail on the mutated store. Empty only for a surviving mutant. */
  readonly kills: readonly string[]
  /**
   * For a mutant no case kills: why (an equivalent mutant, or the case that is missing), and
   * the cases run to show that they pass, so the table notices when one starts killing it.
   */
  readonly survives?: { readonly reason: string; readonly cases: readonly string[] }
}

const occurrences = (text: string, part: string): number => text.split(part).length - 1

/**
 * Throws unless `find` occurs exactly once in each statement the mutant names and in none of
 * the others, so that a rewrite of the SQL cannot silently turn the mutant into a no-op, and
 * a rewrite at the driver (by text) cannot hit a statement the mutant does not name.
 */
export const checkMutant = (mutant: StatementMutant, statements: Readonly<Record<string, string>>): void => {
  if (mutant.find === mutant.replace) throw new Error(`mutant "${mutant.id}": replace equals find`)
  for (const name of mutant.statements) {
    if (!Object.hasOwn(statements, name)) throw new Error(`mutant "${mutant.id}": no statement named ${name}`)
  }
  for (const [name, text] of Object.entries(statements)) {
    const expected = mutant.statements.includes(name) ? 1 : 0
    const found = occurrences(text, mutant.find)
    if (found !== expected) {
      throw new Error(
        `mutant "${mutant.id}": ${JSON.stringify(mutant.find)} occurs ${found} time(s) in statement ${name}, expected ${expected}`,
      )
    }
  }
  if (mutant.kills.length === 0 && mutant.survives === undefined) {
    throw new Error(`mutant "${mutant.id}": names no case that kills it and no reason why none can`)
  }
}

/** The rewrite a target applies to every statement text it sends, and how often it applied the mutant. */
export interface StatementRewriter {
  readonly rewrite: (text: string) => string
  readonly hits: () => number
}

export const statementRewriter = (mutant: StatementMutant): StatementRewriter => {
  let hits = 0
  return {
    rewrite(text) {
      if (!text.includes(mutant.find)) return text
      hits++
      return text.replace(mutant.find, mutant.replace)
    },
    hits: () => hits,
  }
}

/** What one mutant run found: the cases that failed and passed, and how often the mutated text ran. */
export interface MutantRun {
  readonly failed: readonly string[]
  readonly passed: readonly string[]
  readonly hits: number
}

/**
 * Runs the mutant's cases (its `kills`, or for a surviving mutant the cases it names), each
 * by its exact id, on a target built with the mutant's rewriter. A case that is skipped, not
 * run or met a target error (the fixture could not be built) throws, since it proves nothing.
 */
export const runMutant = async (
  mutant: StatementMutant,
  makeTarget: (rewrite: (text: string) => string) => ConformanceTarget,
  options: { readonly server?: ServerConnection | undefined } = {},
): Promise<MutantRun> => {
  const rewriter = statementRewriter(mutant)
  const failed: string[] = []
  const passed: string[] = []
  for (const id of mutant.kills.length > 0 ? mutant.kills : (mutant.survives?.cases ?? [])) {
    const report = await runConformance(makeTarget(rewriter.rewrite), {
      only: `${id}*`,
      ...(options.server ? { server: options.server } : {}),
    })
    const result = report.cases.find((c) => c.id === id)
    if (!result) throw new Error(`mutant "${mutant.id}": no case ${id}`)
    if (result.status === 'pass') passed.push(id)
    else if (result.status === 'fail') failed.push(id)
    else throw new Error(`mutant "${mutant.id}": case ${id} was ${result.status}: ${result.reason ?? ''}`)
  }
  return { failed, passed, hits: rewriter.hits() }
}
