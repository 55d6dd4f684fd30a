import { AssertionError } from 'node:assert'
import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * Soft checks: inside a running case a failed assertion is recorded and the case goes on, so
 * one cosmetic defect (a count missing its zero) cannot hide what the case is about. The
 * case then fails with every recorded failure. Outside a case, or under {@link must},
 * a failed assertion throws as `node:assert` does.
 */
interface CheckScope {
  readonly failures: AssertionError[]
  /** Under `must`: the next failure ends the case. */
  readonly strict: boolean
}

const scope = new AsyncLocalStorage<CheckScope>()

/**
 * Runs a case body, pushing each failed check onto `failures` as it happens (so a body that
 * then throws or hangs keeps them); what the body throws still propagates.
 */
export const collectFailedChecks = <T>(failures: AssertionError[], body: () => Promise<T>): Promise<T> =>
  scope.run({ failures, strict: false }, body)

/**
 * Records an assertion error in the running case, or rethrows it (outside a case, under
 * `must`, or for any other error). `from` is the helper the case called: the stack is cut
 * there, so the report points at the case's own line.
 */
export const recordOrThrow = (error: unknown, from: (...args: never[]) => unknown): void => {
  const current = scope.getStore()
  if (!(error instanceof AssertionError) || current === undefined || current.strict) throw error
  Error.captureStackTrace(error, from)
  current.failures.push(error)
}

/**
 * Runs `checks` so that their first failure ends the case: for a check whose failure makes
 * the rest meaningless (the row the case reads next is missing). Returns what `checks` returns.
 */
export const must = <T>(checks: () => T): T => {
  const current = scope.getStore()
  return current === undefined ? checks() : scope.run({ failures: current.failures, strict: true }, checks)
}
