import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { conformanceCases } from './cases/index.js'
import { BUILT_IN_TARGETS, loadTarget } from './load-target.js'
import { provisionServer, requireAll } from './provision.js'
import { formatReport } from './report.js'
import { runConformance } from './runner.js'

const USAGE = `txbox-conformance: certify an outbox/inbox adapter against the txbox contract

Usage:
  txbox-conformance run --target <name|./module.js> [--url URL] [--only PATTERN] [--report FILE] [--json]
  txbox-conformance list

  --target   a built-in adapter (${BUILT_IN_TARGETS.join(', ')}) or the path of a module
             that exports createConformanceTarget()
  --url      the server to use (else TXBOX_<ENGINE>_URL, else testcontainers when Docker is reachable)
  --only     run only cases whose id contains PATTERN (or matches a * glob)
  --report   write the JSON report to FILE
  --json     print the JSON report instead of the table

Exit status: 0 certified; 1 a case failed; 2 usage or loading error; 3 the target's server was not reached.`

const main = async (argv: string[]): Promise<number> => {
  const [command, ...rest] = argv
  if (command === 'list') {
    for (const c of conformanceCases) console.log(`${c.id.padEnd(48)} ${c.title}`)
    return 0
  }
  if (command !== 'run') {
    console.error(USAGE)
    return command === '--help' || command === 'help' ? 0 : 2
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      target: { type: 'string' },
      url: { type: 'string' },
      only: { type: 'string' },
      report: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  })
  if (!values.target) {
    console.error(`--target is required\n\n${USAGE}`)
    return 2
  }
  const target = await loadTarget(values.target)
  let server: Awaited<ReturnType<typeof provisionServer>> | undefined
  if (target.engine) server = await provisionServer(target.engine, { url: values.url })
  const notRunReason = server && 'notRun' in server ? server.notRun : undefined
  if (!values.json) {
    const where =
      server && 'connection' in server ? ` (${target.engine} from ${server.connection.source})` : ''
    console.error(`certifying ${target.name}${where}...`)
  }
  try {
    const report = await runConformance(target, {
      ...(values.only ? { only: values.only } : {}),
      ...(server && 'connection' in server ? { server: server.connection } : {}),
      ...(notRunReason !== undefined ? { notRunReason } : {}),
    })
    if (values.report) writeFileSync(values.report, `${JSON.stringify(report, null, 2)}\n`)
    console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report))
    if (values.report && !values.json) console.log(`report written to ${values.report}`)
    if (report.summary.failed > 0) return 1
    if (report.summary.notRun > 0) return 3
    return 0
  } finally {
    if (server && 'stop' in server) await server.stop()
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error)
    process.exitCode = 2
  },
)
