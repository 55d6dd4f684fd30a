import type { PeerRow } from '../results.js'
import type { Target } from '../types.js'
import { runPeerDrain } from './peer-drain.js'
import { runPeerEnqueue, TX_SCENARIOS } from './peer-enqueue.js'

/**
 * "txbox vs raw vs peers" on PostgreSQL: the enqueue workloads side by side with the peer,
 * then the peer's drain (txbox's and the raw relay's drains are the relay rows of the run).
 */
export const runPeers = async (
  target: Target,
  options: { quick: boolean; runs: number },
  log: (line: string) => void,
): Promise<PeerRow[]> => {
  const url = process.env.TXBOX_POSTGRES_URL ?? ''
  const rows: PeerRow[] = []
  for (const scenario of TX_SCENARIOS) {
    const row = await runPeerEnqueue(target, url, scenario, options)
    rows.push(row)
    log(
      row.notRun
        ? `postgres peers ${scenario}: not run: ${row.notRun}`
        : `postgres peers ${scenario}: ${Object.entries(row.eventsPerSecond)
            .map(([side, rate]) => `${side} ${rate.toFixed(0)}/s`)
            .join(', ')}`,
    )
  }
  const natsUrl = process.env.TXBOX_NATS_URL
  rows.push(
    natsUrl
      ? await runPeerDrain(url, natsUrl, options, log)
      : { workload: 'drain-1', events: 0, runs: 0, eventsPerSecond: {}, notRun: 'TXBOX_NATS_URL is not set' },
  )
  return rows
}
