import { type Capabilities, ManualClock } from '@txbox/core'
import { type CaseContext, type ConformanceCase, SUITE_EPOCH } from './case.js'
import { conformanceCases } from './cases/index.js'
import { type CaseResult, type ConformanceReport, summarize } from './report.js'
import type { ConformanceFixture, ConformanceTarget, ServerConnection, TargetInfo } from './target.js'
import { SUITE_VERSION } from './version.js'

/** Selects cases whose id matches `only` (a substring, or a glob with `*`), or all of them. */
export const selectCases = (only?: string): readonly ConformanceCase[] => {
  if (!only) return conformanceCases
  const pattern = only.includes('*')
    ? new RegExp(
        `^${only
          .split('*')
          .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
          .join('.*')}$`,
      )
    : undefined
  return conformanceCases.filter((c) => (pattern ? pattern.test(c.id) : c.id.includes(only)))
}

/** How long one case may take before it fails as hung. */
export const CASE_TIMEOUT_MS = 120_000

const withTimeout = async <T>(promise: Promise<T>, ms: number, label: string): Promise<T> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label} did not finish within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Runs one case on fresh fixtures and disposes them afterwards, whatever happened. Throws
 * what the case threw; used by both the vitest binding and {@link runConformance}.
 */
export const runCase = async (target: ConformanceTarget, c: ConformanceCase, capabilities: Capabilities) => {
  const clock = new ManualClock(SUITE_EPOCH)
  const fixtures: ConformanceFixture[] = []
  const open = async (fixtureClock: ManualClock) => {
    const fixture = await target.create({ clock: fixtureClock.now })
    fixtures.push(fixture)
    return fixture
  }
  let failure: unknown
  try {
    const context: CaseContext = {
      clock,
      store: await open(clock),
      capabilities,
      createStore: (other) => open(other ?? clock),
    }
    await withTimeout(c.run(context), CASE_TIMEOUT_MS, c.id)
  } catch (error) {
    failure = error
  }
  const disposed = await Promise.allSettled(fixtures.map((fixture) => fixture.dispose()))
  if (failure !== undefined) throw failure
  const rejected = disposed.find((result): result is PromiseRejectedResult => result.status === 'rejected')
  if (rejected) throw new Error(`dispose failed: ${String(rejected.reason)}`)
}

const errorText = (error: unknown): string =>
  error instanceof Error
    ? `${error.message}${error.cause ? `\ncause: ${String(error.cause)}` : ''}`
    : String(error)

/** Options of {@link runConformance}. */
export interface RunOptions {
  /** Only the cases whose id contains this text (or matches this `*` glob). */
  readonly only?: string
  /** The server to use, when the target needs one. */
  readonly server?: ServerConnection
  /** Why the target cannot run (its server was not found): every case is reported `not-run`. */
  readonly notRunReason?: string
  /** Called after each case, e.g. to print progress. */
  readonly onResult?: (result: CaseResult) => void
}

/** Certifies a target outside any test framework: runs the cases and returns the report. */
export const runConformance = async (
  target: ConformanceTarget,
  options: RunOptions = {},
): Promise<ConformanceReport> => {
  const started = performance.now()
  const startedAt = new Date().toISOString()
  const cases = selectCases(options.only)
  const results: CaseResult[] = []
  const record = (result: CaseResult) => {
    results.push(result)
    options.onResult?.(result)
  }
  let info: TargetInfo | undefined
  let notRun = options.notRunReason
  if (notRun === undefined) {
    try {
      info = await target.setup?.(options.server)
    } catch (error) {
      notRun = `setup failed: ${errorText(error)}`
    }
  }
  const capabilities = info?.capabilities ?? target.capabilities
  try {
    for (const c of cases) {
      if (notRun !== undefined) {
        record({ id: c.id, title: c.title, status: 'not-run', durationMs: 0, reason: notRun })
        continue
      }
      const skip = c.skipReason?.(capabilities)
      if (skip !== undefined) {
        record({ id: c.id, title: c.title, status: 'skip', durationMs: 0, reason: skip })
        continue
      }
      const caseStarted = performance.now()
      try {
        await runCase(target, c, capabilities)
        record({ id: c.id, title: c.title, status: 'pass', durationMs: performance.now() - caseStarted })
      } catch (error) {
        record({
          id: c.id,
          title: c.title,
          status: 'fail',
          durationMs: performance.now() - caseStarted,
          error: errorText(error),
        })
      }
    }
  } finally {
    // Setup was attempted (it may have opened connections even if it then failed).
    if (options.notRunReason === undefined) await target.teardown?.()
  }
  return buildReport({ target, info, capabilities, server: options.server, startedAt, started, results })
}

/** Assembles the report from results (shared with the vitest binding). */
export const buildReport = (input: {
  target: ConformanceTarget
  info: TargetInfo | undefined
  capabilities: Capabilities
  server: ServerConnection | undefined
  startedAt: string
  started: number
  results: readonly CaseResult[]
}): ConformanceReport => {
  const summary = summarize(input.results)
  return {
    suite: { name: '@txbox/conformance', version: SUITE_VERSION },
    adapter: { name: input.target.name, ...(input.target.version ? { version: input.target.version } : {}) },
    engine: {
      name: input.target.engine ?? 'embedded',
      ...(input.info?.serverVersion ? { serverVersion: input.info.serverVersion } : {}),
      ...(input.server ? { connection: input.server.source } : {}),
    },
    capabilities: input.capabilities,
    startedAt: input.startedAt,
    durationMs: performance.now() - input.started,
    cases: input.results,
    summary,
    ok: summary.failed === 0 && summary.notRun === 0 && summary.total > 0,
  }
}
