import { barChart, type ChartGroup } from '../chart.js'
import type { PeerRow, Results } from '../results.js'
import { peerDrainSide } from './peer-drain.js'
import { PEER, PEER_DEFAULTS, PEER_TUNED, PEER_VERSION } from './pg-transactional-outbox.js'

/** The chart of the "txbox vs raw vs peers" table, beside docs/benchmarks.svg. */
export const PEERS_SVG = 'benchmarks-peers.svg'

const WORKLOADS: Record<PeerRow['workload'], string> = {
  'enqueue-tx': 'enqueue 1 event per tx, 1 client',
  'enqueue-tx-8': 'enqueue 1 event per tx, 8 clients',
  'enqueue-tx-100': 'enqueue 100 events per tx',
  'drain-1': 'drain → JetStream, 1 relay, defaults',
}

const COLORS = { txbox: '#336791', raw: '#999999', peer: '#e48e00', tuned: '#f5c070' }

/** One line of the table: events/s per side, txbox's from the relay rows for the drain. */
interface Line {
  readonly title: string
  readonly txbox?: number | undefined
  readonly raw?: number | undefined
  readonly peer?: number | undefined
  readonly tuned?: number | undefined
  readonly notRun?: string
}

const linesOf = (results: Results): Line[] =>
  (results.peers ?? []).map((row) => {
    const title = WORKLOADS[row.workload]
    if (row.notRun) return { title, notRun: row.notRun }
    if (row.workload !== 'drain-1')
      return {
        title,
        txbox: row.eventsPerSecond.txbox,
        raw: row.eventsPerSecond.raw,
        peer: row.eventsPerSecond[PEER],
      }
    const relay = results.relay.find(
      (r) => r.store === 'postgres' && r.relays === 1 && r.config === 'defaults',
    )
    return {
      title,
      txbox: relay?.eventsPerSecond,
      raw: relay?.rawEventsPerSecond,
      peer: row.eventsPerSecond[peerDrainSide(PEER_DEFAULTS)],
      tuned: row.eventsPerSecond[peerDrainSide(PEER_TUNED)],
    }
  })

const rate = (value: number | undefined): string =>
  value === undefined ? '–' : Math.round(value).toLocaleString('en-US')
const ratio = (value: number | undefined, txbox: number | undefined): string =>
  value === undefined || txbox === undefined ? '–' : (value / txbox).toFixed(2)

/** The "txbox vs raw vs peers" section of the generated block, with its chart. */
export const renderPeerSection = (results: Results): string[] => {
  const lines = linesOf(results)
  if (lines.length === 0) return []
  const drain = results.peers?.find((row) => row.workload === 'drain-1')
  const relay = results.relay.find((r) => r.store === 'postgres' && r.relays === 1 && r.config === 'defaults')
  const enqueue = results.peers?.find((row) => row.workload !== 'drain-1' && !row.notRun)
  const out = [
    '',
    '### txbox vs raw vs peers (PostgreSQL)',
    '',
    `The same server, the same run. Enqueue: txbox, the raw driver and ${PEER} ${PEER_VERSION} each commit the same transactions (business insert + the events; the peer's storage function once per message) from the same number of clients, each with a pool of 8, in rounds whose order rotates; median of ${enqueue?.runs ?? '?'} rounds after a warm-up. Drain: txbox's \`OutboxRelay\` at its defaults and the raw relay are the 1-process relay row above (${relay ? relay.events.toLocaleString('en-US') : '?'} events per run); the peer's polling listener drains ${drain ? drain.events.toLocaleString('en-US') : '?'} pre-filled messages per run (median of ${drain?.runs ?? '?'}) in the bench process, its handler publishing each message to JetStream and awaiting the PubAck, at its defaults and "tuned" (${PEER_TUNED.label}). Ratios are to txbox (higher = faster than txbox).`,
    '',
    `| workload (PostgreSQL) | txbox ev/s | raw ev/s | ${PEER} ev/s | raw / txbox | ${PEER} / txbox |`,
    '|---|--:|--:|--:|--:|--:|',
  ]
  for (const line of lines) {
    if (line.notRun) {
      out.push(`| ${line.title} | not run: ${line.notRun.replaceAll('|', '/')} | | | | |`)
      continue
    }
    const tuned = line.tuned === undefined ? '' : ` (tuned ${rate(line.tuned)})`
    const tunedRatio = line.tuned === undefined ? '' : ` (tuned ${ratio(line.tuned, line.txbox)})`
    out.push(
      `| ${line.title} | ${rate(line.txbox)} | ${rate(line.raw)} | ${rate(line.peer)}${tuned} | ${ratio(line.raw, line.txbox)} | ${ratio(line.peer, line.txbox)}${tunedRatio} |`,
    )
  }
  out.push('', `![txbox vs raw vs ${PEER}, ratio to txbox](${PEERS_SVG})`)
  return out
}

/** Each workload's sides as ratios to txbox (txbox = 1, the dashed line). */
export const renderPeersSvg = (results: Results): string =>
  barChart(
    `txbox vs raw vs ${PEER} (PostgreSQL), events/s relative to txbox (${results.machine.date}; dashed = txbox)`,
    linesOf(results).map((line): ChartGroup => {
      const bars: Array<{ label: string; value: number | undefined; color: string }> = [
        { label: 'txbox', value: line.txbox, color: COLORS.txbox },
        { label: 'raw', value: line.raw, color: COLORS.raw },
        { label: PEER, value: line.peer, color: COLORS.peer },
        { label: `${PEER} tuned`, value: line.tuned, color: COLORS.tuned },
      ]
      const txbox = line.txbox
      return {
        title: line.title,
        mark: 1,
        bars:
          txbox === undefined
            ? []
            : bars.flatMap((bar) =>
                bar.value === undefined
                  ? []
                  : [{ label: bar.label, value: bar.value / txbox, color: bar.color }],
              ),
      }
    }),
  )
