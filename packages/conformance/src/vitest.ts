import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Capabilities } from '@txbox/core'
import { afterAll, beforeAll, describe, it } from 'vitest'
import { provisionServer, requireAll } from './provision.js'
import { type CaseResult, formatReport, type TargetError } from './report.js'
import {
  buildReport,
  type CaseBlock,
  CaseFailedError,
  certifyCase,
  checkCaseTimeout,
  checkRequiredAreas,
  prepareTarget,
  selectCases,
  targetErrorBlock,
} from './runner.js'
import type { ConformanceTarget, ServerConnection, TargetInfo } from './target.js'

/** Options of {@link describeConformance}. */
export interface DescribeConformanceOptions {
  /** Only cases whose id contains this text (or matches this `*` glob). Default: `TXBOX_CONFORMANCE_ONLY` or all. */
  readonly only?: string
  /** Where to write `<target>.json`. Default: `TXBOX_REPORT_DIR`, else no file. */
  readonly reportDir?: string
  /** Capability areas that must be certified; the run fails after the cases when one is not. */
  readonly require?: readonly string[]
  /** How long one case may take, in ms (default 120 000). */
  readonly caseTimeoutMs?: number
  /**
   * The name in `TXBOX_<NAME>_URL` and `TXBOX_<NAME>_IMAGE` that finds the server (default:
   * the target's engine): a second target on one engine, such as MySQL 8 beside MariaDB.
   */
  readonly serverName?: string
}

/** Time the vitest test gets beyond the case's own timeout, for fixtures to be created and disposed. */
const DISPOSE_MARGIN_MS = 60_000

/**
 * Registers the whole suite for a target as vitest tests, one test per case id. The
 * target's server is found by {@link provisionServer}; when none is found every case is
 * skipped as "not run" with the reason, or, under `TXBOX_REQUIRE_ALL=1`, the run fails
 * naming the target. A target whose `setup()` throws or whose capabilities are malformed
 * fails the run (a target error, never a skip). A report is written when a report
 * directory is configured.
 */
export const describeConformance = (
  target: ConformanceTarget,
  options: DescribeConformanceOptions = {},
): void => {
  const cases = selectCases(options.only ?? process.env.TXBOX_CONFORMANCE_ONLY)
  const timeoutMs = checkCaseTimeout(options.caseTimeoutMs)
  const required = checkRequiredAreas(options.require)
  const reportDir = options.reportDir ?? process.env.TXBOX_REPORT_DIR
  const results: CaseResult[] = []
  const startedAt = new Date().toISOString()
  const started = performance.now()
  let server: ServerConnection | undefined
  let stopServer = async () => {}
  let info: TargetInfo | undefined
  let capabilities: Capabilities = target.capabilities
  let blocked: CaseBlock | undefined
  let targetError: TargetError | undefined
  let setupAttempted = false

  const report = () =>
    buildReport({ target, info, capabilities, server, startedAt, started, results, required, targetError })

  describe(`conformance: ${target.name}`, () => {
    beforeAll(async () => {
      if (target.engine) {
        const found = await provisionServer(target.engine, { name: options.serverName })
        if ('notRun' in found) {
          if (requireAll())
            throw new Error(`TXBOX_REQUIRE_ALL=1 and target ${target.name} was not run: ${found.notRun}`)
          blocked = { status: 'not-run', reason: found.notRun }
          // Visible in every reporter: a target that did not run must never look like a pass.
          console.warn(`[txbox] conformance target ${target.name} NOT RUN: ${found.notRun}`)
          return
        }
        server = found.connection
        stopServer = found.stop
      }
      setupAttempted = true
      const prepared = await prepareTarget(target, server)
      ;({ info, capabilities, targetError } = prepared)
      if (targetError) {
        blocked = targetErrorBlock(targetError)
        // Every case is marked for the report; the run fails here, once, with the cause.
        for (const c of cases) results.push(await certifyCase({ target, case: c, capabilities, blocked }))
        const where = server ? ` at ${server.url} (from ${server.source})` : ''
        throw new Error(`conformance target ${target.name}${where}: ${targetError.message}`, {
          cause: prepared.thrown,
        })
      }
    })

    afterAll(async () => {
      try {
        if (setupAttempted) await target.teardown?.()
      } finally {
        await stopServer()
        if (reportDir && results.length > 0) {
          mkdirSync(reportDir, { recursive: true })
          writeFileSync(join(reportDir, `${target.name}.json`), `${JSON.stringify(report(), null, 2)}\n`)
          if (process.env.TXBOX_PRINT_REPORT === '1') console.log(formatReport(report()))
        }
      }
      if (required.length > 0 && blocked === undefined && results.length === cases.length) {
        const { missingRequired, text } = report().verdict
        if (missingRequired.length > 0)
          throw new Error(
            `conformance target ${target.name}: required ${missingRequired.join(', ')} not certified: ${text}`,
          )
      }
    })

    for (const c of cases) {
      it(
        c.id,
        async (context) => {
          const result = await certifyCase({ target, case: c, capabilities, timeoutMs, blocked })
          results.push(result)
          if (result.status === 'skip' || result.status === 'not-run')
            context.skip(result.status === 'skip' ? result.reason : `not run: ${result.reason}`)
          else if (result.status !== 'pass') throw new CaseFailedError(result)
        },
        timeoutMs + DISPOSE_MARGIN_MS,
      )
    }
  })
}
