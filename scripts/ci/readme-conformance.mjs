// The root README's package table states each store's conformance result; the truth is the CI
// reports in docs/conformance/<target>.json. This checks that the table's last column says
// what the reports say, and with --write rewrites it from them (run it after refreshing the
// reports).
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))
const write = process.argv.includes('--write')
// package in the table -> its report files (MySQL: MariaDB and MySQL 8)
const targets = {
  '@txbox/core': ['memory'],
  '@txbox/sqlite': ['sqlite'],
  '@txbox/postgres': ['postgres'],
  '@txbox/mysql': ['mysql', 'mysql8'],
  '@txbox/mongodb': ['mongodb'],
  '@txbox/redis': ['redis'],
  '@txbox/dynamodb': ['dynamodb'],
}

// "PostgreSQL 15.18 (Debian 15.18-0+deb12u1)" -> "PostgreSQL 15.18"; FerretDB keeps its wire version.
const server = (version) =>
  version.replace(/ \((?!MongoDB)[^)]*\)$/, '').replace(/ \((MongoDB [^)]*)\)$/, ', $1')

const describe = (report) => {
  const { total, passed, skipped } = report.summary
  let text = `${passed}/${total} passed`
  if (report.engine.serverVersion) text += ` (${server(report.engine.serverVersion)})`
  if (skipped > 0) {
    const reasons = [...new Set(report.cases.filter((c) => c.status === 'skip').map((c) => c.reason))]
    text += `; ${skipped} skipped: ${reasons.join('; ')}`
  }
  return report.adapter.name === 'memory' ? `memory store: ${text}` : text
}

const readmePath = join(root, 'README.md')
const readme = readFileSync(readmePath, 'utf8')
const problems = []
const lines = readme.split('\n').map((line) => {
  const name = /^\| \[`(@txbox\/[a-z]+)`\]/.exec(line)?.[1]
  const files = name === undefined ? undefined : targets[name]
  if (files === undefined) return line
  const reports = []
  for (const target of files) {
    const file = join(root, 'docs/conformance', `${target}.json`)
    if (!existsSync(file)) {
      problems.push(`docs/conformance/${target}.json is missing (the README states ${name}'s result)`)
      return line
    }
    const report = JSON.parse(readFileSync(file, 'utf8'))
    if (!report.ok)
      problems.push(`docs/conformance/${target}.json is not certified: the README cannot claim it`)
    reports.push(report)
  }
  const cells = line.split(' | ')
  const want = `${reports.map(describe).join('; ')} |`
  if (cells.at(-1) === want) return line
  if (!write)
    problems.push(
      `${name}: the README says "${cells.at(-1)?.slice(0, -2)}", the report says "${want.slice(0, -2)}"`,
    )
  cells[cells.length - 1] = want
  return cells.join(' | ')
})
if (write && problems.length === 0) writeFileSync(readmePath, lines.join('\n'))
if (problems.length > 0) {
  console.error(
    `[readme-conformance] the README's conformance column does not match docs/conformance:\n${problems.join('\n')}\n` +
      'After refreshing the reports, run: node scripts/ci/readme-conformance.mjs --write',
  )
  process.exit(1)
}
console.log(
  `[readme-conformance] README conformance column ${write ? 'written from' : 'matches'} docs/conformance`,
)
