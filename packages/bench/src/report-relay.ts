import { E2E_MAX_OFFERED, E2E_PRODUCERS, E2E_RUNS, E2E_SECONDS } from './latency.js'
import { POLL_INTERVAL_MS, RELAY_MODE } from './relay-e2e.js'
import type { LatencyRow, MemoryResult, RelayRow, Results } from './results.js'

/** Issue 16's goals for txbox/raw: the relay at 1 and at 4 processes, end-to-end p99 and throughput, peak RSS. */
export const RELAY_GOALS = {
  oneProcess: 0.9,
  fourProcesses: 1.0,
  p99: 2,
  throughput: 0.9,
  memory: 1.2,
} as const

const rate = (value: number | undefined): string =>
  value === undefined ? '' : value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(1)
const ms = (value: number | undefined): string => (value === undefined ? '' : value.toFixed(1))
const cell = (text: string): string => text.replaceAll('|', '/')

/** A ratio with its goal: bold when on the wrong side of it. */
export const goalCell = (ratio: number | undefined, goal: number, higherIsBetter: boolean): string => {
  if (ratio === undefined || !Number.isFinite(ratio)) return ''
  const met = higherIsBetter ? ratio >= goal : ratio <= goal
  return met ? ratio.toFixed(2) : `**${ratio.toFixed(2)}** (${higherIsBetter ? '<' : '>'} ${goal.toFixed(1)})`
}

/** The raw relay's rate a tuned txbox row is compared with: the defaults row's, same store and process count. */
const rawFor = (rows: readonly RelayRow[], row: RelayRow): number | undefined =>
  row.rawEventsPerSecond ??
  rows.find((other) => other.store === row.store && other.relays === row.relays && other.rawEventsPerSecond)
    ?.rawEventsPerSecond

/** CPU time the relay processes spent per event, txbox / raw (median of the runs). */
const cpuCell = (row: RelayRow): string =>
  row.cpuUsPerEvent === undefined
    ? ''
    : `${Math.round(row.cpuUsPerEvent)}${row.rawCpuUsPerEvent === undefined ? '' : ` / ${Math.round(row.rawCpuUsPerEvent)}`}`

const relayTable = (rows: readonly RelayRow[]): string[] => {
  const lines = [
    `From a pre-filled outbox to acknowledged JetStream messages marked sent (the stream's message count is checked after each run), txbox against the raw relay in alternating runs. ${RELAY_MODE}. Median of the runs; ratio = txbox/raw (events/s), goal ${RELAY_GOALS.oneProcess.toFixed(1)} with 1 process and ${RELAY_GOALS.fourProcesses.toFixed(1)} with 4 (bold = below). A row with other relay options than the defaults runs txbox only and is compared with the raw relay of the defaults row above it. MongoDB and DynamoDB have no raw relay: one txbox run each. "Relay CPU" is the CPU time (user + system) of all the relay processes of a run from start to stop, per event: on a machine shared with other work it moves far less than events/s.`,
    '',
    '| store | processes | txbox relay options | events per run | txbox ev/s | raw ev/s | txbox/raw | relay CPU us/event: txbox / raw | runs: txbox / raw (ev/s) |',
    '|---|--:|---|--:|--:|--:|--:|--:|---|',
  ]
  for (const row of rows.filter((relayRow) => relayRow.keys === undefined)) {
    const head = `| ${row.store} | ${row.relays} | ${row.config ?? ''} | ${row.events ? row.events.toLocaleString('en-US') : ''}`
    if (row.notRun) {
      lines.push(`${head} | not run: ${cell(row.notRun)} | | | | |`)
      continue
    }
    const raw = rawFor(rows, row)
    const ratio =
      row.eventsPerSecond !== undefined && raw !== undefined ? row.eventsPerSecond / raw : undefined
    const goal = row.relays === 1 ? RELAY_GOALS.oneProcess : RELAY_GOALS.fourProcesses
    const runs = `${(row.samples ?? []).map(rate).join(', ')}${row.rawSamples ? ` / ${row.rawSamples.map(rate).join(', ')}` : ''}`
    lines.push(
      `${head} | ${rate(row.eventsPerSecond)} | ${row.rawEventsPerSecond === undefined ? (raw === undefined ? '' : `(${rate(raw)})`) : rate(raw)} | ${goalCell(ratio, goal, true)} | ${cpuCell(row)} | ${runs} |`,
    )
  }
  return lines
}

/** Issue 18's goal: keyed events drain at >= 0.8 of unkeyed ones with >= 100 active keys. */
const KEYED_GOAL = 0.8

/** The relay over keyed events against the same relay (defaults) over unkeyed ones, same store and processes. */
const keyedRelayTable = (rows: readonly RelayRow[]): string[] => {
  const lines = [
    `The txbox relay at its defaults over events spread round-robin over N ordering keys (prefilled through the adapter, so each key's events carry their keySeq), against the same relay over unkeyed events (the defaults row of the table above: same store, same processes, same run). Issue 18's goal: keyed >= ${KEYED_GOAL.toFixed(1)} x unkeyed with >= 100 active keys (bold = below). Every event of a key waits for the one before it to be published and marked sent.`,
    '',
    '| store | processes | keys | events per run | keyed ev/s | unkeyed ev/s | keyed/unkeyed | relay CPU us/event: keyed / unkeyed | runs (ev/s) |',
    '|---|--:|--:|--:|--:|--:|--:|--:|---|',
  ]
  for (const row of rows.filter((relayRow) => relayRow.keys !== undefined)) {
    const head = `| ${row.store} | ${row.relays} | ${row.keys} | ${row.events ? row.events.toLocaleString('en-US') : ''}`
    if (row.notRun) {
      lines.push(`${head} | not run: ${cell(row.notRun)} | | | | |`)
      continue
    }
    const unkeyed = rows.find(
      (other) =>
        other.store === row.store &&
        other.relays === row.relays &&
        other.config === 'defaults' &&
        other.keys === undefined,
    )
    const ratio =
      row.eventsPerSecond !== undefined && unkeyed?.eventsPerSecond !== undefined
        ? row.eventsPerSecond / unkeyed.eventsPerSecond
        : undefined
    const cpu =
      row.cpuUsPerEvent === undefined
        ? ''
        : `${Math.round(row.cpuUsPerEvent)}${unkeyed?.cpuUsPerEvent === undefined ? '' : ` / ${Math.round(unkeyed.cpuUsPerEvent)}`}`
    lines.push(
      `${head} | ${rate(row.eventsPerSecond)} | ${rate(unkeyed?.eventsPerSecond)} | ${goalCell(ratio, KEYED_GOAL, true)} | ${cpu} | ${(row.samples ?? []).map(rate).join(', ')} |`,
    )
  }
  return lines
}

/** Committed events/s, flagged when the producers fell more than 5% behind the offered load (then they, not the relay, set the pace). */
const committedCell = (row: LatencyRow): string =>
  row.committedPerSecond !== undefined && row.committedPerSecond < 0.95 * row.offeredPerSecond
    ? `**${rate(row.committedPerSecond)}** (producers behind)`
    : rate(row.committedPerSecond)

const latencyTable = (rows: readonly LatencyRow[]): string[] => {
  const lines = [
    `Producers commit one event per transaction (with the business row, as in the enqueue-in-transaction scenario; up to ${E2E_PRODUCERS} transactions in flight, 1 on SQLite) at a fixed offered load: half the slower of the raw relay's 1-process drain rate and txbox's enqueue-in-transaction rate (8 clients; SQLite: 1) measured in the same run, at most ${E2E_MAX_OFFERED.toLocaleString('en-US')} events/s, for ${E2E_SECONDS} s, while one relay process runs; ${E2E_RUNS} run${E2E_RUNS === 1 ? '' : 's'} per side, txbox first. txbox = its enqueue in the caller's transaction + \`OutboxRelay\` at its defaults; raw = the raw enqueue in the same transaction + the raw relay; both relays poll every ${POLL_INTERVAL_MS} ms when empty (no LISTEN/NOTIFY wake-up). "Committed" in bold: the producers fell more than 5% behind the offered load, so the delivered ratio measures the enqueue side, not the relay. Latency = the JetStream message's stored timestamp minus the moment the producer's COMMIT returned, over every event. Delivered = events / (last stored - first commit). Goals: p99 txbox/raw <= ${RELAY_GOALS.p99}, delivered txbox/raw >= ${RELAY_GOALS.throughput}.`,
    '',
    '| store | relay | offered ev/s | committed ev/s | delivered ev/s | p50 ms | p99 ms | max ms | p99 txbox/raw | delivered txbox/raw |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|',
  ]
  for (const row of rows) {
    const head = `| ${row.store} | ${row.relay} | ${rate(row.offeredPerSecond)}`
    if (row.notRun) {
      lines.push(`${head} | not run: ${cell(row.notRun)} | | | | | | |`)
      continue
    }
    const raw = rows.find((other) => other.store === row.store && other.relay === 'raw' && !other.notRun)
    const compare = row.relay === 'txbox' && raw
    lines.push(
      `${head} | ${committedCell(row)} | ${rate(row.deliveredPerSecond)} | ${ms(row.p50Ms)} | ${ms(row.p99Ms)} | ${ms(row.maxMs)} | ${
        compare && row.p99Ms !== undefined && raw.p99Ms
          ? goalCell(row.p99Ms / raw.p99Ms, RELAY_GOALS.p99, false)
          : ''
      } | ${
        compare && row.deliveredPerSecond !== undefined && raw.deliveredPerSecond
          ? goalCell(row.deliveredPerSecond / raw.deliveredPerSecond, RELAY_GOALS.throughput, true)
          : ''
      } |`,
    )
  }
  return lines
}

const memoryTable = (results: readonly MemoryResult[]): string[] => {
  const [first] = results
  const lines = [
    `One relay process drains ${first ? first.events.toLocaleString('en-US') : ''} events from a SQLite file outbox to JetStream: txbox's \`OutboxRelay\` at its defaults, then the raw relay (each on its own freshly filled file). RSS sampled every 100 ms from /proc/self/status; the peak is VmHWM at exit. Goal: txbox's peak <= ${RELAY_GOALS.memory} x the raw relay's.`,
    '',
    '| relay | seconds | 0% | 25% | 50% | 75% | 100% | peak (VmHWM, MB) |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
  ]
  for (const mem of results) {
    if (mem.notRun) {
      lines.push(`| ${mem.relay} | not run: ${cell(mem.notRun)} | | | | | | |`)
      continue
    }
    lines.push(
      `| ${mem.relay} | ${mem.seconds ?? ''} | ${[0, 25, 50, 75, 100].map((p) => mem.rssAt?.find((m) => m.percent === p)?.rssMb ?? '').join(' | ')} | ${mem.peakRssMb ?? ''} |`,
    )
  }
  const txbox = results.find((mem) => mem.relay === 'txbox')?.peakRssMb
  const raw = results.find((mem) => mem.relay === 'raw')?.peakRssMb
  if (txbox !== undefined && raw)
    lines.push('', `Peak txbox/raw: ${goalCell(txbox / raw, RELAY_GOALS.memory, false)}.`)
  return lines
}

/** The relay sections of the generated block: drain (txbox vs raw per process count), end to end, memory. */
export const renderRelaySections = (results: Results): string[] => {
  const lines: string[] = []
  if (results.relay.length > 0)
    lines.push('', '### Relay: txbox vs the raw relay', '', ...relayTable(results.relay))
  if (results.relay.some((row) => row.keys !== undefined))
    lines.push('', '### Relay with ordering keys', '', ...keyedRelayTable(results.relay))
  if (results.latency && results.latency.length > 0)
    lines.push(
      '',
      '### End to end: commit -> JetStream at a fixed offered load',
      '',
      ...latencyTable(results.latency),
    )
  if (results.memory && results.memory.length > 0)
    lines.push('', '### Relay memory', '', ...memoryTable(results.memory))
  return lines
}
