import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { conformanceCases } from './cases/index.js'
import { BUILT_IN_TARGETS, loadTarget } from './load-target.js'
import { provisionServer } from './provision.js'
import { formatReport } from './report.js'
import { checkRequiredAreas, runConformance } from './runner.js'
import { areaNames } from './verdict.js'
import { SUITE_VERSION } from './version.js'

const USAGE = `txbox-conformance: certify an outbox/inbox adapter against the txbox contract

Usage:
  txbox-conformance run --target <name|./module.js> [--url URL | --image IMAGE] [--only PATTERN] [--require AREAS]
                        [--case-timeout-ms MS] [--report FILE] [--json]
  txbox-conformance list
  txbox-conformance --version

  --target   a built-in adapter (${BUILT_IN_TARGETS.join(', ')}) or the path of a module
             that exports createConformanceTarget()
  --url      the server to use (else TXBOX_<ENGINE>_URL, else a testcontainers container when a
             Docker engine is reachable; else the target is reported not run)
  --image    the image of that container (else TXBOX_<ENGINE>_IMAGE, else the official one); the
             CLI stops it on exit, SIGINT and SIGTERM
  --only     run only cases whose id contains PATTERN (or matches a * glob)
  --require  comma-separated capability areas that must be certified (${areaNames().join(', ')});
             one the target does not declare, or whose cases were skipped, fails the run
  --case-timeout-ms
             how long one case may take before it fails as hung (default 120000)
  --report   write the JSON report to FILE
  --json     print the JSON report instead of the table

The verdict names the areas the target is certified for, and those it is not (with why):
  CERTIFIED for: outbox, inbox, claim (skip-locked), ...; NOT certified: transactions (skipped: ...)

Exit status: 0 certified for every area that ran and every --require'd one; 1 a case failed;
2 usage or loading error; 3 the target's server was not reached; 4 target error (setup(),
create() or dispose() threw, or the declared capabilities are malformed); 5 a --require'd
area is not certified.`

/** Where the CLI writes: the terminal, or a test's buffers. */
export interface CliIo {
  readonly out: (line: string) => void
  readonly err: (line: string) => void
}

const consoleIo: CliIo = { out: (line) => console.log(line), err: (line) => console.error(line) }

/** Runs the CLI and returns its exit status (0 certified, 1 failed, 2 usage, 3 not reached, 4 target error, 5 required area missing). */
export const runCli = async (argv: readonly string[], io: CliIo = consoleIo): Promise<number> => {
  try {
    return await run(argv, io)
  } catch (error) {
    io.err(error instanceof Error ? error.message : String(error))
    return 2
  }
}

const run = async (argv: readonly string[], io: CliIo): Promise<number> => {
  const [command, ...rest] = argv
  if (command === '--version' || command === 'version') {
    io.out(SUITE_VERSION)
    return 0
  }
  if (command === 'list') {
    for (const c of conformanceCases) io.out(`${c.id.padEnd(48)} ${c.title}`)
    return 0
  }
  if (command !== 'run') {
    io.err(USAGE)
    return command === '--help' || command === 'help' ? 0 : 2
  }
  const { values } = parseArgs({
    args: [...rest],
    options: {
      target: { type: 'string' },
      url: { type: 'string' },
      image: { type: 'string' },
      only: { type: 'string' },
      require: { type: 'string' },
      'case-timeout-ms': { type: 'string' },
      report: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  })
  if (!values.target) {
    io.err(`--target is required\n\n${USAGE}`)
    return 2
  }
  const required = values.require
    ?.split(',')
    .map((area) => area.trim())
    .filter((area) => area.length > 0)
  const timeoutText = values['case-timeout-ms']
  const caseTimeoutMs =
    timeoutText === undefined ? undefined : /^\d+$/.test(timeoutText) ? Number(timeoutText) : Number.NaN
  if (caseTimeoutMs !== undefined && !(Number.isSafeInteger(caseTimeoutMs) && caseTimeoutMs > 0)) {
    io.err(
      `--case-timeout-ms must be a positive integer number of milliseconds, got ${JSON.stringify(timeoutText)}`,
    )
    return 2
  }
  // Before loading the target: a typo must not wait for a container to start.
  checkRequiredAreas(required)
  const target = await loadTarget(values.target)
  let server: Awaited<ReturnType<typeof provisionServer>> | undefined
  if (target.engine)
    server = await provisionServer(target.engine, {
      url: values.url,
      urlOption: '--url',
      image: values.image,
    })
  const notRunReason = server && 'notRun' in server ? server.notRun : undefined
  if (notRunReason !== undefined) {
    // Once for the target; the report marks each case not run without repeating it.
    io.err(`${target.name} not run: ${notRunReason}`)
  } else if (!values.json) {
    const where =
      server && 'connection' in server
        ? ` (${target.engine} from ${server.connection.source}${server.connection.image ? ` ${server.connection.image}` : ''})`
        : ''
    io.err(`certifying ${target.name}${where}...`)
  }
  try {
    const report = await runConformance(target, {
      ...(values.only ? { only: values.only } : {}),
      ...(required ? { require: required } : {}),
      ...(caseTimeoutMs !== undefined ? { caseTimeoutMs } : {}),
      ...(server && 'connection' in server ? { server: server.connection } : {}),
      ...(notRunReason !== undefined ? { notRunReason } : {}),
    })
    if (values.report) writeFileSync(values.report, `${JSON.stringify(report, null, 2)}\n`)
    io.out(values.json ? JSON.stringify(report, null, 2) : formatReport(report))
    if (values.report && !values.json) io.out(`report written to ${values.report}`)
    if (report.summary.failed > 0) return 1
    if (report.targetError || report.summary.errors > 0) return 4
    if (report.summary.notRun > 0) return 3
    if (report.verdict.missingRequired.length > 0) return 5
    return report.ok ? 0 : 1
  } finally {
    if (server && 'stop' in server) await server.stop()
  }
}
