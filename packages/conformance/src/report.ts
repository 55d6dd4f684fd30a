import type { Capabilities } from '@txbox/core'
import type { ServerConnection } from './target.js'

/** How one case ended. `not-run`: the target's server could not be reached. */
export type CaseStatus = 'pass' | 'fail' | 'skip' | 'not-run'

/** One case's line in the report. */
export interface CaseResult {
  readonly id: string
  readonly title: string
  readonly status: CaseStatus
  readonly durationMs: number
  /** Why it was skipped or not run. */
  readonly reason?: string
  /** The assertion or error message of a failed case. */
  readonly error?: string
}

/** `conformance-report.json`: what a certification run found. */
export interface ConformanceReport {
  readonly suite: { readonly name: '@txbox/conformance'; readonly version: string }
  readonly adapter: { readonly name: string; readonly version?: string }
  readonly engine: {
    readonly name: string
    readonly serverVersion?: string
    readonly connection?: ServerConnection['source']
  }
  readonly capabilities: Capabilities
  readonly startedAt: string
  readonly durationMs: number
  readonly cases: readonly CaseResult[]
  readonly summary: {
    readonly total: number
    readonly passed: number
    readonly failed: number
    readonly skipped: number
    readonly notRun: number
  }
  /** True when no case failed and the target was reached. */
  readonly ok: boolean
}

/** Counts the results. */
export const summarize = (cases: readonly CaseResult[]): ConformanceReport['summary'] => ({
  total: cases.length,
  passed: cases.filter((result) => result.status === 'pass').length,
  failed: cases.filter((result) => result.status === 'fail').length,
  skipped: cases.filter((result) => result.status === 'skip').length,
  notRun: cases.filter((result) => result.status === 'not-run').length,
})

const LABELS: Record<CaseStatus, string> = { pass: 'PASS', fail: 'FAIL', skip: 'SKIP', 'not-run': 'NOT RUN' }

/** The report as a readable terminal table, ending with a plain `N passed, N failed` line. */
export const formatReport = (report: ConformanceReport): string => {
  const width = Math.max(...report.cases.map((result) => result.id.length), 10)
  const server = report.engine.serverVersion ? ` on ${report.engine.serverVersion}` : ''
  const lines = [
    `txbox conformance ${report.suite.version}: ${report.adapter.name}${report.adapter.version ? ` ${report.adapter.version}` : ''}${server}`,
    `capabilities: ${JSON.stringify(report.capabilities)}`,
    '',
  ]
  // A target whose server was not found has one reason for every case: say it once.
  const [first] = report.cases
  const oneNotRunReason =
    first !== undefined &&
    report.cases.every((result) => result.status === 'not-run' && result.reason === first.reason)
  if (oneNotRunReason) lines.push(`  ${LABELS['not-run']}  all ${report.cases.length} cases: ${first.reason}`)
  for (const result of oneNotRunReason ? [] : report.cases) {
    const duration =
      result.status === 'pass' || result.status === 'fail' ? `${Math.round(result.durationMs)} ms` : ''
    lines.push(`  ${LABELS[result.status].padEnd(7)}  ${result.id.padEnd(width)}  ${duration}`.trimEnd())
    if (result.reason) lines.push(`           ${' '.repeat(width)}  reason: ${result.reason}`)
    if (result.error)
      lines.push(
        ...result.error
          .split('\n')
          .slice(0, 6)
          .map((line) => `           ${line}`),
      )
  }
  const { total, passed, failed, skipped, notRun } = report.summary
  lines.push('', `${report.adapter.name}: ${total} cases in ${(report.durationMs / 1000).toFixed(1)} s`)
  lines.push(`conformance: ${passed} passed, ${failed} failed, ${skipped} skipped, ${notRun} not run`)
  lines.push(
    report.ok
      ? 'CERTIFIED'
      : report.summary.notRun > 0
        ? 'NOT CERTIFIED (target not reached)'
        : 'NOT CERTIFIED',
  )
  return lines.join('\n')
}
