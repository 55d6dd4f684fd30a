#!/usr/bin/env node
// Prints the ledger reports (written by packages/relay/test/ledger.test.ts into
// TXBOX_LEDGER_REPORT_DIR, or reports/ledger beside TXBOX_REPORT_DIR) as the Markdown tables
// of docs/RELIABILITY.md, and exits non-zero if a run lost, duplicated or stranded anything.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const dir = process.argv[2] ?? 'reports/ledger'
const reports = readdirSync(dir)
  .filter((name) => name.endsWith('.json'))
  .map((name) => JSON.parse(readFileSync(join(dir, name), 'utf8')))
  .sort((a, b) => a.broker.localeCompare(b.broker) || a.store.localeCompare(b.store))
if (reports.length === 0) {
  console.error(`no ledger reports in ${dir}`)
  process.exit(1)
}

const seconds = (value) => (value === null || value === undefined ? 'none' : `${value.toFixed(1)} s`)
const row = (cells) => `| ${cells.join(' | ')} |`

console.log(
  row([
    'store',
    'broker',
    'committed',
    'lost',
    'rolled back, published',
    'stream duplicates',
    'duplicate effects',
    'stuck',
    'recovery (per fault)',
    'drain',
  ]),
)
console.log(row(Array(10).fill('---')))
for (const r of reports) {
  const recovery = r.faults
    .map((fault) => `${fault.target}: ${seconds(fault.resumedAfterSeconds)}`)
    .join(', ')
  console.log(
    row([
      r.store,
      r.broker,
      `${r.committed} (+${r.rolledBack} rolled back)`,
      r.lost,
      r.rolledBackPublished,
      r.streamDuplicates,
      r.duplicateEffects,
      r.stuck,
      recovery,
      seconds(r.drainSeconds),
    ]),
  )
}

console.log()
console.log(
  row([
    'store',
    'broker',
    'fault',
    'down',
    'backlog at fault',
    'relays publishing again after',
    'inbox processing again after',
  ]),
)
console.log(row(Array(7).fill('---')))
for (const r of reports) {
  for (const fault of r.faults) {
    console.log(
      row([
        r.store,
        r.broker,
        fault.fault,
        seconds(fault.downSeconds),
        fault.backlog,
        seconds(fault.publishingResumedAfterSeconds),
        seconds(fault.resumedAfterSeconds),
      ]),
    )
  }
}

console.log()
console.log(
  row([
    'store',
    'broker',
    'relays (killed)',
    'held by killed relays',
    'dead letters out / in',
    'transient failures',
    'handler reruns',
    'idempotent replays',
    'inbox duplicates acked',
    'run',
  ]),
)
console.log(row(Array(10).fill('---')))
for (const r of reports) {
  console.log(
    row([
      r.store,
      r.broker,
      `${r.relaysStarted} (${r.relaysKilled})`,
      r.eventsHeldByKilledRelays.join(', '),
      `${r.outboxPoison} / ${r.inboxPoison}`,
      r.transientFailures,
      r.handlerReruns,
      r.idempotentReplays,
      r.inboxDuplicatesAcked,
      seconds(r.totalSeconds),
    ]),
  )
}

const bad = reports.filter((r) => r.lost + r.duplicateEffects + r.stuck + r.rolledBackPublished > 0)
for (const r of bad) console.error(`${r.store} on ${r.broker}: lost, duplicated or stranded events`)
process.exit(bad.length === 0 ? 0 : 1)
