import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { EnqueueParams } from '@txbox/core'
import { median } from '../harness.js'
import type { PeerRow } from '../results.js'
import {
  makeEvents,
  NotRun,
  runTransactions,
  SCENARIO_INFO,
  TX_SHAPES,
  type TxScenario,
  transactionsOf,
} from '../scenarios.js'
import type { Target } from '../types.js'
import { PEER, PEER_DEFAULTS, PgTransactionalOutbox, peerMessage } from './pg-transactional-outbox.js'

export const TX_SCENARIOS: readonly TxScenario[] = ['enqueue-tx', 'enqueue-tx-8', 'enqueue-tx-100']

type Side = 'txbox' | 'raw' | typeof PEER

/**
 * Enqueue in the caller's transaction on PostgreSQL: txbox, the raw driver and the peer each
 * commit the same transactions (business insert + the events) from the same number of
 * clients, with a pool of the same size each, on the same server. Every round runs the three
 * sides one after the other, the order rotating round by round, after one warm-up round.
 */
export const runPeerEnqueue = async (
  target: Target,
  url: string,
  scenario: TxScenario,
  options: { quick: boolean; runs: number },
): Promise<PeerRow> => {
  const events = Math.max(
    100,
    Math.round((SCENARIO_INFO[scenario].events * (options.quick ? 0.1 : 1)) / 100) * 100,
  )
  const { clients } = TX_SHAPES[scenario]
  const ns = await target.namespace()
  let peer: PgTransactionalOutbox | undefined
  try {
    peer = await PgTransactionalOutbox.open(url, 8)
    const { adapterTx, rawTx } = ns
    if (typeof adapterTx === 'string') throw new NotRun(adapterTx)
    if (typeof rawTx === 'string') throw new NotRun(rawTx)
    const enqueueTx = peer.enqueueTx
    const samples: Record<Side, number[]> = { txbox: [], raw: [], [PEER]: [] }
    const sides: Side[] = ['txbox', 'raw', PEER]
    for (let round = -1; round < options.runs; round++) {
      const start = ((round % sides.length) + sides.length) % sides.length
      for (const side of [...sides.slice(start), ...sides.slice(0, start)]) {
        const batch = makeEvents(`${scenario}-${side}-${round}-${randomUUID().slice(0, 8)}`, events)
        let run: () => Promise<void>
        if (side === PEER) {
          const messages = transactionsOf(
            scenario,
            batch.map((event) => peerMessage(event, PEER_DEFAULTS.parallel)),
          )
          run = () => runTransactions(enqueueTx, messages, clients)
        } else {
          const fn: (events: readonly EnqueueParams[], n: number) => Promise<void> =
            side === 'txbox' ? adapterTx : rawTx
          const transactions = transactionsOf(scenario, batch)
          run = () => runTransactions(fn, transactions, clients)
        }
        const started = performance.now()
        await run()
        const rate = events / ((performance.now() - started) / 1000)
        if (round >= 0) samples[side].push(rate)
      }
    }
    return {
      workload: scenario,
      events,
      runs: options.runs,
      eventsPerSecond: Object.fromEntries(sides.map((side) => [side, median(samples[side])])),
      samples,
    }
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    return {
      workload: scenario,
      events,
      runs: options.runs,
      eventsPerSecond: {},
      notRun: reason.slice(0, 200),
    }
  } finally {
    await peer?.dispose().catch(() => undefined)
    await ns.dispose().catch(() => undefined)
  }
}
