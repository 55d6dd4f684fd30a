import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Capabilities } from '@txbox/core'
import { afterAll, beforeAll, describe, it } from 'vitest'
import { provisionServer, requireAll } from './provision.js'
import { type CaseResult, formatReport } from './report.js'
import { buildReport, runCase, selectCases } from './runner.js'
import type { ConformanceTarget, ServerConnection, TargetInfo } from './target.js'

/** Options of {@link describeConformance}. */
export interface DescribeConformanceOptions {
  /** Only cases whose id contains this text (or matches this `*` glob). Default: `TXBOX_CONFORMANCE_ONLY` or all. */
  readonly only?: string
  /** Where to write `<target>.json`. Default: `TXBOX_REPORT_DIR`, else no file. */
  readonly reportDir?: string
}

/**
 * Registers the whole suite for a target as vitest tests, one test per case id. The
 * target's server is found by {@link provisionServer}; when none is found every case is
 * skipped as "not run" with the reason, or, under `TXBOX_REQUIRE_ALL=1`, the run fails
 * naming the target. A report is written when a report directory is configured.
 */
export const describeConformance = (
  target: ConformanceTarget,
  options: DescribeConformanceOptions = {},
): void => {
  const cases = selectCases(options.only ?? process.env.TXBOX_CONFORMANCE_ONLY)
  const reportDir = options.reportDir ?? process.env.TXBOX_REPORT_DIR
  const results: CaseResult[] = []
  const startedAt = new Date().toISOString()
  const started = performance.now()
  let server: ServerConnection | undefined
  let stopServer = async () => {}
  let info: TargetInfo | undefined
  let capabilities: Capabilities = target.capabilities
  let notRun: string | undefined
  let setupDone = false

  describe(`conformance: ${target.name}`, () => {
    beforeAll(async () => {
      if (target.engine) {
        const found = await provisionServer(target.engine)
        if ('notRun' in found) {
          if (requireAll())
            throw new Error(`TXBOX_REQUIRE_ALL=1 and target ${target.name} was not run: ${found.notRun}`)
          notRun = found.notRun
          // Visible in every reporter: a target that did not run must never look like a pass.
          console.warn(`[txbox] conformance target ${target.name} NOT RUN: ${found.notRun}`)
          return
        }
        server = found.connection
        stopServer = found.stop
      }
      try {
        info = await target.setup?.(server)
      } catch (error) {
        // Set up failed: the server did not answer, or refused us. Like a missing server,
        // that is "not run" outside CI and a named failure under TXBOX_REQUIRE_ALL.
        const where = server ? ` at ${server.url} (from ${server.source})` : ''
        const reason = `setup failed${where}: ${error instanceof Error ? error.message : String(error)}`
        setupDone = true
        if (requireAll())
          throw new Error(`TXBOX_REQUIRE_ALL=1 and target ${target.name} was not run: ${reason}`, {
            cause: error,
          })
        notRun = reason
        console.warn(`[txbox] conformance target ${target.name} NOT RUN: ${reason}`)
        return
      }
      setupDone = true
      capabilities = info?.capabilities ?? target.capabilities
    })

    afterAll(async () => {
      try {
        if (setupDone) await target.teardown?.()
      } finally {
        await stopServer()
        if (reportDir && results.length > 0) {
          const report = buildReport({ target, info, capabilities, server, startedAt, started, results })
          mkdirSync(reportDir, { recursive: true })
          writeFileSync(join(reportDir, `${target.name}.json`), `${JSON.stringify(report, null, 2)}\n`)
          if (process.env.TXBOX_PRINT_REPORT === '1') console.log(formatReport(report))
        }
      }
    })

    for (const c of cases) {
      it(c.id, async (context) => {
        if (notRun !== undefined) {
          results.push({ id: c.id, title: c.title, status: 'not-run', durationMs: 0, reason: notRun })
          context.skip(`not run: ${notRun}`)
          return
        }
        const skip = c.skipReason?.(capabilities)
        if (skip !== undefined) {
          results.push({ id: c.id, title: c.title, status: 'skip', durationMs: 0, reason: skip })
          context.skip(skip)
          return
        }
        const caseStarted = performance.now()
        try {
          await runCase(target, c, capabilities)
          results.push({
            id: c.id,
            title: c.title,
            status: 'pass',
            durationMs: performance.now() - caseStarted,
          })
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error)
          results.push({
            id: c.id,
            title: c.title,
            status: 'fail',
            durationMs: performance.now() - caseStarted,
            error: message,
          })
          throw error
        }
      })
    }
  })
}
