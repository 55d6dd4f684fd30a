// @ts-check
/**
 * Prints the counts and the surviving mutants of one run from Stryker's JSON report, in the
 * shape docs/CONFORMANCE.md uses: `node mutation/summarize.mjs sqlite`.
 */
import { readFileSync } from 'node:fs'

const name = process.argv[2]
if (!name) throw new Error('usage: node mutation/summarize.mjs <sqlite|memory>')
/** @type {{ files: Record<string, { source: string, mutants: Array<{ id: string, mutatorName: string, replacement?: string, status: string, location: { start: { line: number, column: number }, end: { line: number, column: number } } }> }> }} */
const report = JSON.parse(readFileSync(`reports/mutation/${name}/mutation.json`, 'utf8'))

/** @type {Record<string, number>} */
const counts = {}
const survivors = []
for (const [file, { source, mutants }] of Object.entries(report.files)) {
  const lines = source.split('\n')
  for (const mutant of mutants) {
    counts[mutant.status] = (counts[mutant.status] ?? 0) + 1
    if (mutant.status !== 'Survived' && mutant.status !== 'NoCoverage') continue
    const { start, end } = mutant.location
    const original =
      start.line === end.line
        ? (lines[start.line - 1] ?? '').slice(start.column - 1, end.column - 1)
        : `${(lines[start.line - 1] ?? '').slice(start.column - 1)}…`
    survivors.push({
      file,
      line: start.line,
      status: mutant.status,
      mutator: mutant.mutatorName,
      original,
      replacement: mutant.replacement ?? '',
    })
  }
}
const short = (text) => text.replace(/\s+/g, ' ').trim().slice(0, 90)
console.log(JSON.stringify(counts))
for (const s of survivors.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line)) {
  console.log(
    `${s.file}:${s.line} [${s.status}] ${s.mutator}: \`${short(s.original)}\` -> \`${short(s.replacement)}\``,
  )
}
