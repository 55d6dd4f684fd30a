import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { connect } from 'nats'
import { median } from '../harness.js'
import { streamMessages, withStream } from '../relay-e2e.js'
import type { PeerRow } from '../results.js'
import { makeEvents } from '../scenarios.js'
import {
  PEER,
  PEER_DEFAULTS,
  PEER_TUNED,
  type PeerListenerMode,
  PgTransactionalOutbox,
  peerMessage,
} from './pg-transactional-outbox.js'

/**
 * Events per drain run, not the 100,000: the peer at its defaults moved ~70 messages a
 * second on this loaded machine (one `sequential` message at a time, a transaction each), so
 * 100,000 would take over 20 minutes per run. Both modes drain the same amount. Its polling
 * function scans every unprocessed row on each poll, so a smaller backlog flatters it.
 */
export const PEER_DRAIN_EVENTS = 3_000

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The side's name in the table: the peer and its settings. */
export const peerDrainSide = (mode: PeerListenerMode): string => `${PEER} (${mode.label})`

/**
 * The peer's polling listener draining a pre-filled outbox to JetStream, in the bench process
 * (nothing else runs meanwhile): timed from its start until every message is marked processed;
 * the stream's count is checked after each run. At its defaults, then at the tuned settings,
 * alternating run by run.
 */
export const runPeerDrain = async (
  url: string,
  natsUrl: string,
  options: { quick: boolean; runs: number },
  log: (line: string) => void,
): Promise<PeerRow> => {
  const events = options.quick ? 1_000 : PEER_DRAIN_EVENTS
  const runs = options.quick ? 1 : Math.min(options.runs, 3)
  const modes = [PEER_DEFAULTS, PEER_TUNED]
  const samples: Record<string, number[]> = Object.fromEntries(modes.map((mode) => [peerDrainSide(mode), []]))
  try {
    await withStream(natsUrl, async (stream) => {
      let stored = 0
      for (let run = 0; run < runs; run++) {
        for (const mode of run % 2 === 0 ? modes : [...modes].reverse()) {
          const rate = await drainOnce(url, natsUrl, stream.subject, events, mode)
          stored += events
          const inStream = await streamMessages(natsUrl, stream.name)
          if (inStream !== stored)
            throw new Error(`the stream holds ${inStream} messages, expected ${stored}`)
          samples[peerDrainSide(mode)]?.push(rate)
          log(`postgres ${peerDrainSide(mode)} drain: ${rate.toFixed(0)} events/s (${events} events)`)
        }
      }
    })
    return {
      workload: 'drain-1',
      events,
      runs,
      eventsPerSecond: Object.fromEntries(
        Object.entries(samples).map(([side, values]) => [side, median(values)]),
      ),
      samples,
    }
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    return {
      workload: 'drain-1',
      events,
      runs,
      eventsPerSecond: {},
      notRun: `failed: ${reason.slice(0, 160)}`,
    }
  }
}

const drainOnce = async (
  url: string,
  natsUrl: string,
  subject: string,
  events: number,
  mode: PeerListenerMode,
): Promise<number> => {
  const peer = await PgTransactionalOutbox.open(url, 4)
  const nc = await connect({ servers: natsUrl, noAsyncTraces: true })
  let shutdown: (() => Promise<void>) | undefined
  try {
    const batch = makeEvents(`peer-drain-${randomUUID().slice(0, 8)}`, events, subject)
    await peer.prefill(batch.map((event) => peerMessage(event, mode.parallel)))
    let published = 0
    const started = performance.now()
    shutdown = peer.listen(mode, nc.jetstream(), subject, () => {
      published++
    })
    const deadline = Date.now() + 600_000
    // The handler's count says when to start asking the table, whose count is the truth:
    // a message is done when the listener committed it as processed.
    while (published < events || (await peer.processed()) < events) {
      if (Date.now() > deadline) throw new Error(`only ${published} of ${events} published in 600 s`)
      await sleep(published < events ? 5 : 2)
    }
    return events / ((performance.now() - started) / 1000)
  } finally {
    await shutdown?.().catch(() => undefined)
    await nc.close().catch(() => undefined)
    await peer.dispose().catch(() => undefined)
  }
}
