import { performance } from 'node:perf_hooks'
import type { EnqueueParams } from '@txbox/core'
import { connect } from 'nats'
import { quantile } from './percentiles.js'
import {
  childSpec,
  DEFAULT_RELAY,
  hasRawRelay,
  type RelaySide,
  streamMessages,
  withStream,
} from './relay-e2e.js'
import { RelayProcesses } from './relay-processes.js'
import type { LatencyRow } from './results.js'
import { makeEvents } from './scenarios.js'
import type { Namespace, Target } from './types.js'

/** Seconds the producers run per side and run. */
export const E2E_SECONDS = 8
/** Runs per side (alternating which side goes first): one keeps a full `pnpm bench` near 12 minutes. */
export const E2E_RUNS = 1
/** Transactions in flight at once from the producers (one when the store runs one transaction at a time). */
export const E2E_PRODUCERS = 8
/** Offered load when the run measured no raw drain rate for the store. */
const FALLBACK_OFFERED = 500
/**
 * The producers' ceiling: above it the enqueues, not the relay, set the pace on this 2-core
 * machine under load, and the two sides would no longer see the same offered load.
 */
export const E2E_MAX_OFFERED = 1_000

/** Rates measured earlier in the same run: the raw relay's drain (1 process) and txbox's enqueue in a transaction. */
export interface MeasuredRates {
  readonly rawDrain: number | undefined
  readonly enqueue: number | undefined
}

/**
 * Half the slower of the raw relay's drain and txbox's enqueue measured in the same run, so
 * that neither the relay nor the producers set the pace; at most E2E_MAX_OFFERED, at least
 * 100, rounded down to 100 events/s. FALLBACK_OFFERED when the run measured neither.
 */
export const offeredLoad = (rates: MeasuredRates): number => {
  const known = [rates.rawDrain, rates.enqueue].filter(
    (rate): rate is number => rate !== undefined && Number.isFinite(rate),
  )
  if (known.length === 0) return FALLBACK_OFFERED
  return Math.max(100, Math.floor(Math.min(E2E_MAX_OFFERED, ...known.map((rate) => rate / 2)) / 100) * 100)
}

interface Produced {
  /** Commit time (epoch ms, sub-ms precision) per event id. */
  readonly commits: Map<string, number>
  readonly seconds: number
  readonly firstCommit: number
}

const nowMs = (): number => performance.timeOrigin + performance.now()
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Commits `rate` transactions per second (one event each, plus the business row) for
 * `seconds`, on a schedule: transaction n is due at n / rate s; up to `producers` are in
 * flight, so a slow commit delays the next ones rather than the schedule.
 */
const produce = async (
  enqueue: (events: readonly EnqueueParams[], n: number) => Promise<void>,
  events: readonly EnqueueParams[],
  rate: number,
  producers: number,
): Promise<Produced> => {
  const commits = new Map<string, number>()
  const started = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: producers }, async () => {
      while (next < events.length) {
        const n = next++
        const due = started + (n * 1000) / rate
        const wait = due - performance.now()
        if (wait > 0) await sleep(wait)
        const event = events[n] as EnqueueParams
        await enqueue([event], n)
        commits.set(event.eventId, nowMs())
      }
    }),
  )
  return {
    commits,
    seconds: (performance.now() - started) / 1000,
    firstCommit: Math.min(...commits.values()),
  }
}

/** Each stored message's JetStream timestamp (epoch ms) by its Nats-Msg-Id, read with an ordered consumer. */
const storedAt = async (url: string, stream: string, count: number): Promise<Map<string, number>> => {
  const nc = await connect({ servers: url, noAsyncTraces: true })
  try {
    const consumer = await nc.jetstream().consumers.get(stream)
    const messages = await consumer.consume()
    const out = new Map<string, number>()
    for await (const message of messages) {
      out.set(message.headers?.get('Nats-Msg-Id') ?? '', message.info.timestampNanos / 1e6)
      if (out.size >= count) break
    }
    return out
  } finally {
    await nc.close()
  }
}

interface Sample {
  latencies: number[]
  committedPerSecond: number
  deliveredPerSecond: number
}

const latencyOnce = async (
  target: Target,
  url: string,
  side: RelaySide,
  rate: number,
  tag: string,
): Promise<Sample> =>
  withStream(url, async (stream) => {
    const ns: Namespace = await target.namespace()
    let processes: RelayProcesses | undefined
    try {
      const enqueue = side === 'raw' ? ns.rawTx : ns.adapterTx
      if (typeof enqueue === 'string') throw new Error(enqueue)
      const events = makeEvents(`e2e-${side}-${tag}`, Math.round(rate * E2E_SECONDS), stream.subject)
      processes = await RelayProcesses.launch([
        childSpec(target, ns.endpoint, side, url, `e2e-${side}-${tag}`, DEFAULT_RELAY, {
          reportEveryMs: 50,
          rss: false,
        }),
      ])
      processes.start()
      const produced = await produce(enqueue, events, rate, ns.concurrentTx === undefined ? E2E_PRODUCERS : 1)
      await processes.waitForPublished(events.length, 120_000, 10)
      await processes.stop()
      processes = undefined
      const inStream = await streamMessages(url, stream.name)
      if (inStream !== events.length)
        throw new Error(`the stream holds ${inStream} messages, expected ${events.length}`)
      const stored = await storedAt(url, stream.name, events.length)
      const latencies: number[] = []
      let lastStored = 0
      for (const [eventId, committed] of produced.commits) {
        const at = stored.get(eventId)
        if (at === undefined) throw new Error(`event ${eventId} is not in the stream`)
        latencies.push(at - committed)
        lastStored = Math.max(lastStored, at)
      }
      return {
        latencies,
        committedPerSecond: events.length / produced.seconds,
        deliveredPerSecond: (events.length * 1000) / (lastStored - produced.firstCommit),
      }
    } finally {
      processes?.kill()
      await ns.dispose().catch(() => undefined)
    }
  })

/**
 * End to end (issue 16 goal 4): producers commit at a fixed offered load while one relay
 * process runs; commit -> JetStream latency per event and the sustained throughput, txbox
 * (its enqueue in the caller's transaction + OutboxRelay at its defaults) against the raw
 * side (a bare INSERT in the same transaction + the raw relay), alternating.
 */
export const runLatency = async (
  target: Target,
  rates: MeasuredRates,
  quick: boolean,
  log: (line: string) => void,
): Promise<LatencyRow[]> => {
  const url = process.env.TXBOX_NATS_URL
  const rate = offeredLoad(rates) / (quick ? 4 : 1)
  const sides: RelaySide[] = ['txbox', 'raw']
  if (!url || !hasRawRelay(target.name))
    return sides.map((relay) => ({
      store: target.name,
      relay,
      offeredPerSecond: rate,
      notRun: url ? 'no raw relay for this store' : 'TXBOX_NATS_URL is not set',
    }))
  const runs = E2E_RUNS
  const samples: Record<RelaySide, Sample[]> = { txbox: [], raw: [] }
  try {
    for (let run = 0; run < runs; run++) {
      const order: RelaySide[] = run % 2 === 0 ? ['txbox', 'raw'] : ['raw', 'txbox']
      for (const side of order) samples[side].push(await latencyOnce(target, url, side, rate, `${run}`))
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    log(`${target.name} end to end failed: ${message}`)
    return sides.map((relay) => ({
      store: target.name,
      relay,
      offeredPerSecond: rate,
      notRun: `failed: ${message.slice(0, 160)}`,
    }))
  }
  return sides.map((relay) => {
    const all = samples[relay]
    const latencies = all.flatMap((sample) => sample.latencies).sort((a, b) => a - b)
    const mean = (pick: (sample: Sample) => number) => all.reduce((sum, s) => sum + pick(s), 0) / all.length
    const row: LatencyRow = {
      store: target.name,
      relay,
      offeredPerSecond: rate,
      committedPerSecond: mean((s) => s.committedPerSecond),
      deliveredPerSecond: mean((s) => s.deliveredPerSecond),
      events: latencies.length,
      runs,
      p50Ms: quantile(latencies, 0.5),
      p99Ms: quantile(latencies, 0.99),
      maxMs: latencies[latencies.length - 1] as number,
    }
    log(
      `${target.name} end to end (${relay}) at ${rate}/s: p50 ${row.p50Ms?.toFixed(1)} ms, p99 ${row.p99Ms?.toFixed(1)} ms, delivered ${row.deliveredPerSecond?.toFixed(0)}/s`,
    )
    return row
  })
}
