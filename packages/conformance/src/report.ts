import type { Capabilities } from '@txbox/core'
import { type FailureDetail, failureLines } from './failure.js'
import type { ServerConnection } from './target.js'
import type { Verdict } from './verdict.js'

/**
 * How one case ended. `fail`: the adapter broke the contract; `error`: the target itself
 * failed (`setup()`, `create()`, `dispose()`, malformed capabilities), so the case could
 * not judge the adapter; `skip`: the declared capabilities exclude it; `not-run`: the
 * target's server could not be reached.
 */
export type CaseStatus = 'pass' | 'fail' | 'error' | 'skip' | 'not-run'

/** One case's line in the report. */
export interface CaseResult {
  readonly id: string
  readonly title: string
  /** The capability area the case certifies (see `CAPABILITY_AREAS`). */
  readonly area: string
  readonly status: CaseStatus
  readonly durationMs: number
  /** Why it was skipped, not run, or met a target error. */
  readonly reason?: string
  /** Every failure of a failed case, as text: all failed checks, then the error that ended it. */
  readonly error?: string
  /** The same failures, structured: name, message, code, cause, top stack frames. */
  readonly failures?: readonly FailureDetail[]
}

/** The target failed before any case could run: its `setup()` threw, or its capabilities are malformed. */
export interface TargetError {
  readonly stage: 'setup' | 'capabilities'
  readonly message: string
  /** The error `setup()` threw. */
  readonly failure?: FailureDetail
}

/** `conformance-report.json`: what a certification run found. */
export interface ConformanceReport {
  readonly suite: { readonly name: '@txbox/conformance'; readonly version: string }
  readonly adapter: { readonly name: string; readonly version?: string }
  readonly engine: {
    readonly name: string
    readonly serverVersion?: string
    /** Where the server came from: a URL (`option`, `env`) or a container (`testcontainers`). */
    readonly connection?: ServerConnection['source']
    /** The container's image, when `connection` is `testcontainers`. */
    readonly image?: string
  }
  readonly capabilities: Capabilities
  /** The areas `--require` (or the `require` option) demanded. */
  readonly required: readonly string[]
  readonly startedAt: string
  readonly durationMs: number
  readonly targetError?: TargetError
  readonly cases: readonly CaseResult[]
  readonly summary: {
    readonly total: number
    readonly passed: number
    readonly failed: number
    /** Cases that met a target error. */
    readonly errors: number
    readonly skipped: number
    readonly notRun: number
  }
  /** Which capability areas are certified, which are not and why. */
  readonly verdict: Verdict
  /** True when the target was reached, no case failed or met a target error, and every required area is certified. */
  readonly ok: boolean
}

/** Counts the results. */
export const summarize = (cases: readonly CaseResult[]): ConformanceReport['summary'] => ({
  total: cases.length,
  passed: cases.filter((result) => result.status === 'pass').length,
  failed: cases.filter((result) => result.status === 'fail').length,
  errors: cases.filter((result) => result.status === 'error').length,
  skipped: cases.filter((result) => result.status === 'skip').length,
  notRun: cases.filter((result) => result.status === 'not-run').length,
})

const LABELS: Record<CaseStatus, string> = {
  pass: 'PASS',
  fail: 'FAIL',
  error: 'ERROR',
  skip: 'SKIP',
  'not-run': 'NOT RUN',
}

/** Failures beyond this many per case are counted, not printed: the JSON report has them all. */
const PRINTED_FAILURES = 10

/** The report as a readable terminal table, ending with the counts and the verdict. */
export const formatReport = (report: ConformanceReport): string => {
  const width = Math.max(...report.cases.map((result) => result.id.length), 10)
  const indent = ' '.repeat(11)
  const via = report.engine.image ? `, ${report.engine.connection} ${report.engine.image}` : ''
  const server = report.engine.serverVersion ? ` on ${report.engine.serverVersion}${via}` : ''
  const lines = [
    `txbox conformance ${report.suite.version}: ${report.adapter.name}${report.adapter.version ? ` ${report.adapter.version}` : ''}${server}`,
    `capabilities: ${JSON.stringify(report.capabilities)}`,
    ...(report.required.length > 0 ? [`required: ${report.required.join(', ')}`] : []),
    '',
  ]
  if (report.targetError) {
    lines.push(`  TARGET ERROR (${report.targetError.stage}): ${report.targetError.message}`)
    if (report.targetError.failure)
      lines.push(...failureLines(report.targetError.failure).map((line) => `${indent}${line}`))
  }
  // A target that was not reached or failed its setup has one reason for every case: say it once.
  const [first] = report.cases
  const oneReason =
    first !== undefined &&
    (first.status === 'not-run' || first.status === 'error') &&
    report.cases.length > 1 &&
    report.cases.every((result) => result.status === first.status && result.reason === first.reason)
  if (oneReason) lines.push(`  ${LABELS[first.status]}  all ${report.cases.length} cases: ${first.reason}`)
  for (const result of oneReason ? [] : report.cases) {
    const duration =
      result.status === 'pass' || result.status === 'fail' || result.status === 'error'
        ? `${Math.round(result.durationMs)} ms`
        : ''
    lines.push(`  ${LABELS[result.status].padEnd(7)}  ${result.id.padEnd(width)}  ${duration}`.trimEnd())
    if (result.reason) lines.push(`${indent}${' '.repeat(width)}  reason: ${result.reason}`)
    const failures = result.failures ?? []
    for (const failure of failures.slice(0, PRINTED_FAILURES))
      lines.push(...failureLines(failure).map((line) => `${indent}${line}`))
    if (failures.length > PRINTED_FAILURES)
      lines.push(`${indent}... and ${failures.length - PRINTED_FAILURES} more failures (see the JSON report)`)
  }
  const { total, passed, failed, errors, skipped, notRun } = report.summary
  lines.push('', `${report.adapter.name}: ${total} cases in ${(report.durationMs / 1000).toFixed(1)} s`)
  lines.push(
    `conformance: ${passed} passed, ${failed} failed, ${skipped} skipped, ${notRun} not run${errors > 0 ? `, ${errors} target errors` : ''}`,
  )
  lines.push(report.verdict.text)
  return lines.join('\n')
}
