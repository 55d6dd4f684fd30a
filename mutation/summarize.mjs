// @ts-check
/**
 * Prints one mutation run's scores and its surviving mutants, grouped by file and by their
 * classification in `mutation/survivors.json`, as markdown for docs/CONFORMANCE.md:
 * `node mutation/summarize.mjs sqlite`. Exits 1 while a survivor is unclassified. A
 * `<run>-units` run (the same mutants, the package's unit tests added) shares its run's
 * classification: what it kills there was out of the suite's reach, not untested.
 * `--skip-reach` leaves the out-of-reach survivors out of the listing (still counted);
 * `--only-reach` lists nothing else.
 */
import { readFileSync } from 'node:fs'

const RULES_OF = { sqlite: 'sqlite', 'sqlite-units': 'sqlite', memory: 'memory', 'memory-units': 'memory' }
const run = process.argv[2] ?? ''
const skipReach = process.argv.includes('--skip-reach')
const onlyReach = process.argv.includes('--only-reach')
if (!Object.hasOwn(RULES_OF, run))
  throw new Error(`usage: node mutation/summarize.mjs <${Object.keys(RULES_OF).join('|')}>`)

/**
 * @typedef {{ status: string, mutatorName: string, replacement?: string, location: { start: { line: number, column: number }, end: { line: number, column: number } } }} Mutant
 * A rule with `only` matches just those mutants of its lines (`"<original> → <replacement>"`);
 * the first matching rule wins, so such rules come before their line's general rule.
 * @typedef {{ file: string, kind: 'equivalent' | 'reach' | 'false' | 'rule', why: string, lines: string[], only?: string[] }} Rule
 */
/** @type {{ files: Record<string, { source: string, mutants: Mutant[] }> }} */
const report = JSON.parse(readFileSync(`reports/mutation/${run}/mutation.json`, 'utf8'))
/** @type {Rule[]} */
const rules = JSON.parse(readFileSync('mutation/survivors.json', 'utf8'))[
  RULES_OF[/** @type {keyof typeof RULES_OF} */ (run)]
]

const LABELS = {
  equivalent: 'equivalent',
  reach: "out of the suite's reach",
  false: 'false survivor',
  rule: 'not killed',
}
/** @param {string} text */
const short = (text) => {
  const line = text.replace(/\s+/g, ' ').trim().replace(/`/g, "'")
  return line.length > 70 ? `${line.slice(0, 67)}…` : line
}

/** @type {Record<string, number>} */
const counts = {}
const tally = { equivalent: 0, reach: 0, false: 0, rule: 0, unclassified: 0 }
/** Per file: mutants, killed (with timeouts), and survivors by classification. */
/** @type {Map<string, Record<string, number>>} */
const perFile = new Map()
/** @type {Map<string, Map<string, { line: number, entry: string }[]>>} */
const groups = new Map()
for (const [file, { source, mutants }] of Object.entries(report.files)) {
  const lines = source.split('\n')
  const row = { mutants: 0, killed: 0, equivalent: 0, reach: 0, false: 0, rule: 0, unclassified: 0 }
  perFile.set(file, row)
  for (const mutant of mutants) {
    counts[mutant.status] = (counts[mutant.status] ?? 0) + 1
    row.mutants++
    if (mutant.status === 'Killed' || mutant.status === 'Timeout') row.killed++
    if (mutant.status !== 'Survived' && mutant.status !== 'NoCoverage') continue
    const { start, end } = mutant.location
    const first = lines[start.line - 1] ?? ''
    const original =
      start.line === end.line
        ? first.slice(start.column - 1, end.column - 1)
        : `${first.slice(start.column - 1)} …`
    const rule = rules.find(
      (r) =>
        file.endsWith(`/${r.file}`) &&
        r.lines.includes(first.trim()) &&
        (r.only === undefined || r.only.includes(`${original} → ${mutant.replacement ?? ''}`)),
    )
    tally[rule?.kind ?? 'unclassified']++
    row[rule?.kind ?? 'unclassified']++
    const heading = rule ? `${LABELS[rule.kind]}: ${rule.why}` : 'UNCLASSIFIED'
    const coverage = mutant.status === 'NoCoverage' ? '(no coverage) ' : ''
    const entry = `${start.line} ${coverage}${mutant.mutatorName}: \`${short(original)}\` → \`${short(mutant.replacement ?? '')}\``
    if (skipReach && rule?.kind === 'reach') continue
    if (onlyReach && rule?.kind !== 'reach') continue
    const byHeading = groups.get(file) ?? new Map()
    groups.set(file, byHeading)
    byHeading.set(heading, [...(byHeading.get(heading) ?? []), { line: start.line, entry }])
  }
}

const total = Object.values(counts).reduce((sum, n) => sum + n, 0)
const killed = (counts.Killed ?? 0) + (counts.Timeout ?? 0)
/** @param {number} part @param {number} whole */
const pct = (part, whole) => `${((100 * part) / whole).toFixed(1)}%`
console.log(`counts: ${JSON.stringify(counts)}; survivors: ${JSON.stringify(tally)}`)
console.log(`killed (with timeouts): ${killed}/${total} = ${pct(killed, total)}`)
console.log(
  `killed of non-equivalent (false survivors count as killed): ${killed + tally.false}/${total - tally.equivalent} = ${pct(killed + tally.false, total - tally.equivalent)}`,
)
console.log(
  `  leaving out-of-reach mutants out too: ${killed + tally.false}/${total - tally.equivalent - tally.reach} = ${pct(killed + tally.false, total - tally.equivalent - tally.reach)}`,
)
console.log('\n| file | mutants | killed | equivalent | out of reach | false survivors | not killed |')
console.log('|---|---|---|---|---|---|---|')
for (const [file, row] of [...perFile].sort(([a], [b]) => a.localeCompare(b))) {
  const notKilled = row.rule + row.unclassified
  console.log(
    `| \`${file}\` | ${row.mutants} | ${row.killed} | ${row.equivalent} | ${row.reach} | ${row.false} | ${notKilled} |`,
  )
}
for (const [file, byHeading] of [...groups].sort(([a], [b]) => a.localeCompare(b))) {
  console.log(`\n#### \`${file}\`\n`)
  for (const [heading, entries] of byHeading) {
    console.log(`- **${heading}**`)
    for (const { entry } of entries.sort((a, b) => a.line - b.line)) console.log(`  - ${entry}`)
  }
}
if (tally.unclassified > 0) process.exitCode = 1
