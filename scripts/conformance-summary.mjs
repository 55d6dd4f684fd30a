#!/usr/bin/env node
// Prints one line per conformance report (written by the test run into TXBOX_REPORT_DIR)
// and exits non-zero if any target failed a case or was not run.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const dir = process.argv[2] ?? 'reports/conformance'
const files = readdirSync(dir)
  .filter((name) => name.endsWith('.json'))
  .sort()
if (files.length === 0) {
  console.error(`no conformance reports in ${dir}`)
  process.exit(1)
}
let ok = true
let passed = 0
let failed = 0
let skipped = 0
for (const file of files) {
  const report = JSON.parse(readFileSync(join(dir, file), 'utf8'))
  const s = report.summary
  passed += s.passed
  failed += s.failed + s.notRun + (s.errors ?? 0)
  skipped += s.skipped
  ok &&= report.ok
  const via = report.engine.connection
    ? `, ${report.engine.connection}${report.engine.image ? ` ${report.engine.image}` : ''}`
    : ''
  const server = `${report.engine.serverVersion ?? report.engine.name}${via}`
  console.log(
    `${report.ok ? 'CERTIFIED    ' : 'NOT CERTIFIED'}  ${report.adapter.name.padEnd(10)} ${String(s.passed).padStart(3)} passed ${String(s.failed).padStart(2)} failed ${String(s.skipped).padStart(2)} skipped ${String(s.notRun).padStart(2)} not run  (${server})`,
  )
  if (report.verdict) console.log(`               ${report.verdict.text}`)
  for (const c of report.cases.filter(
    (c) => c.status === 'skip' || c.status === 'not-run' || c.status === 'error',
  )) {
    console.log(`               ${c.status.padEnd(8)} ${c.id}: ${c.reason}`)
  }
}
console.log(`conformance: ${passed} passed, ${failed} failed, ${skipped} skipped`)
process.exit(ok ? 0 : 1)
