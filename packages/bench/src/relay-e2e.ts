import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { StoreKind } from '@txbox/core'
import { connect } from 'nats'
import { median } from './harness.js'
import { RelayProcesses } from './relay-processes.js'
import type { RelayChildSpec } from './relay-protocol.js'
import type { RelayRow } from './results.js'
import { makeEvents } from './scenarios.js'
import type { Target } from './types.js'

/** Options of the txbox relay; undefined = the relay's own default. */
export interface RelayConfig {
  readonly batchSize?: number
  readonly concurrency?: number
  readonly batchesInFlight?: number
  readonly maxBatchBytes?: number
  /** Events spread round-robin over this many ordering keys (issue 18); unkeyed when undefined. */
  readonly keys?: number
}

/** The relay's defaults, whatever they are in the build measured. */
export const DEFAULT_RELAY: RelayConfig = {}
/**
 * Bigger batches: fewer claim/mark round trips per event. maxBatchBytes too, since the
 * default (128 MiB) caps a claim at 128 events of the 1 MiB maxEventBytes NATS allows.
 */
export const TUNED_RELAY: RelayConfig = { batchSize: 500, concurrency: 256, maxBatchBytes: 536_870_912 }
/**
 * The relay's defaults over keyed events: 100 ordering keys, the fewest issue 18's goal names
 * (keyed >= 0.8 of unkeyed with >= 100 active keys). Compared with the defaults row, txbox to txbox.
 */
export const KEYED_RELAY: RelayConfig = { keys: 100 }
/** The relay as it was before issue 16: claim, publish, mark in lockstep. */
export const LOCKSTEP_RELAY: RelayConfig = { batchesInFlight: 1 }
/** The raw relay's claim size: the txbox relay's documented default batch. */
export const RAW_BATCH = 100
/** Both relays wait this long after an empty claim (the drain only sees it at its very end). */
export const POLL_INTERVAL_MS = 20

export const configLabel = (config: RelayConfig): string => {
  const set = Object.entries(config).filter(([, value]) => value !== undefined)
  return set.length === 0 ? 'defaults' : set.map(([name, value]) => `${name} ${String(value)}`).join(', ')
}

export const RELAY_MODE = `N relays = N child processes, each with its own store connection and its own NATS connection (\`noAsyncTraces: true\` on both sides, as the relay CLI connects); the parent fills the outbox, starts them all at once, and times until their reported published-and-marked count reaches the events of the run. txbox = \`OutboxRelay\` + \`JetStreamPublisher\`; raw = the minimal relay in \`packages/bench/src/raw-relay/\` (claim ${RAW_BATCH} with a lease, \`FOR UPDATE SKIP LOCKED\` where the database has it, every publish of the batch in flight, await the acks, one mark), on the same tables; both poll every ${POLL_INTERVAL_MS} ms when the outbox is empty`

/** A uniquely named JetStream stream for one run, deleted afterwards. */
export const withStream = async <T>(
  url: string,
  fn: (stream: { name: string; subject: string }) => Promise<T>,
): Promise<T> => {
  const nc = await connect({ servers: url, timeout: 5_000 })
  const jsm = await nc.jetstreamManager()
  const id = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`
  const name = `TXBOX_BENCH_${id}`
  const subject = `txbox.bench.${id}`
  await jsm.streams.add({ name, subjects: [`${subject}.>`] })
  try {
    return await fn({ name, subject: `${subject}.orders` })
  } finally {
    await jsm.streams.delete(name).catch(() => undefined)
    await nc.close()
  }
}

export const streamMessages = async (url: string, name: string): Promise<number> => {
  const nc = await connect({ servers: url, timeout: 5_000 })
  try {
    return (await (await nc.jetstreamManager()).streams.info(name)).state.messages
  } finally {
    await nc.close()
  }
}

/** Events per relay run at full size, unless the store sets fewer (slow servers). */
const RELAY_EVENTS = 20_000

export type RelaySide = 'txbox' | 'raw'

/** The stores with a raw relay (packages/bench/src/raw-relay/): the four issue 16 names. */
export const hasRawRelay = (store: StoreKind): boolean =>
  store === 'postgres' || store === 'mysql' || store === 'sqlite' || store === 'redis'

export const childSpec = (
  target: Target,
  endpoint: RelayChildSpec['endpoint'],
  side: RelaySide,
  natsUrl: string,
  workerId: string,
  config: RelayConfig,
  reporting: { reportEveryMs: number; rss: boolean },
): RelayChildSpec => ({
  endpoint,
  relay: side,
  natsUrl,
  workerId: `${target.name}-${workerId}`,
  batchSize: side === 'raw' ? RAW_BATCH : config.batchSize,
  concurrency: side === 'raw' ? undefined : config.concurrency,
  batchesInFlight: side === 'raw' ? undefined : config.batchesInFlight,
  maxBatchBytes: side === 'raw' ? undefined : config.maxBatchBytes,
  pollIntervalMs: POLL_INTERVAL_MS,
  ...reporting,
})

/**
 * Events per second from a pre-filled outbox to acknowledged JetStream messages marked sent,
 * with 1 and 4 relay processes; txbox and the raw relay alternate run by run (txbox first on
 * even runs) when the store has a raw relay and the config is the defaults.
 */
export const runRelay = async (
  target: Target,
  quick: boolean,
  log: (line: string) => void,
  config: RelayConfig = DEFAULT_RELAY,
): Promise<RelayRow[]> => {
  const url = process.env.TXBOX_NATS_URL
  const full = target.relayEvents ?? RELAY_EVENTS
  const events = quick ? Math.min(2_000, full) : full
  const label = configLabel(config)
  const withRaw = config === DEFAULT_RELAY && hasRawRelay(target.name)
  // A txbox-only row has no ratio to steady: one run keeps the slow servers' rows short.
  const runs = quick || !hasRawRelay(target.name) ? 1 : Math.min(3, target.maxRuns ?? 3)
  const rows: RelayRow[] = []
  for (const relays of [1, 4]) {
    if (!url) {
      rows.push({ store: target.name, relays, events, config: label, notRun: 'TXBOX_NATS_URL is not set' })
      continue
    }
    try {
      const samples: Record<RelaySide, number[]> = { txbox: [], raw: [] }
      const cpu: Record<RelaySide, number[]> = { txbox: [], raw: [] }
      await withStream(url, async (stream) => {
        let stored = 0
        for (let run = 0; run < runs; run++) {
          const order: RelaySide[] = !withRaw
            ? ['txbox']
            : run % 2 === 0
              ? ['txbox', 'raw']
              : ['raw', 'txbox']
          for (const side of order) {
            const measured = await relayOnce(
              target,
              url,
              stream.subject,
              events,
              relays,
              side,
              `r${relays}-${run}`,
              config,
            )
            samples[side].push(measured.perSecond)
            cpu[side].push(measured.cpuUsPerEvent)
            stored += events
            const inStream = await streamMessages(url, stream.name)
            if (inStream !== stored)
              throw new Error(`the stream holds ${inStream} messages, expected ${stored}`)
          }
        }
      })
      const txbox = median(samples.txbox)
      const row: RelayRow = {
        store: target.name,
        relays,
        events,
        eventsPerSecond: txbox,
        samples: samples.txbox,
        cpuUsPerEvent: median(cpu.txbox),
        config: label,
        ...(config.keys === undefined ? {} : { keys: config.keys }),
        ...(withRaw
          ? {
              rawEventsPerSecond: median(samples.raw),
              rawSamples: samples.raw,
              rawCpuUsPerEvent: median(cpu.raw),
              ratio: txbox / median(samples.raw),
            }
          : {}),
      }
      rows.push(row)
      log(
        `${target.name} relay x${relays} processes (${label}): txbox ${txbox.toFixed(0)} events/s${
          withRaw ? `, raw ${row.rawEventsPerSecond?.toFixed(0)}, ratio ${row.ratio?.toFixed(2)}` : ''
        }; relay CPU ${row.cpuUsPerEvent?.toFixed(0)}${withRaw ? ` vs ${row.rawCpuUsPerEvent?.toFixed(0)}` : ''} us/event (${events} events)`,
      )
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      log(`${target.name} relay x${relays} failed: ${message}`)
      rows.push({
        store: target.name,
        relays,
        events,
        config: label,
        notRun: `failed: ${message.slice(0, 160)}`,
      })
    }
  }
  return rows
}

const relayOnce = async (
  target: Target,
  url: string,
  subject: string,
  events: number,
  relays: number,
  side: RelaySide,
  tag: string,
  config: RelayConfig,
): Promise<{ perSecond: number; cpuUsPerEvent: number }> => {
  const ns = await target.namespace()
  let processes: RelayProcesses | undefined
  try {
    const made = makeEvents(`relay-${side}-${tag}-${randomBytes(3).toString('hex')}`, events, subject)
    const keys = config.keys
    if (keys === undefined) await ns.prefill(made, side === 'raw')
    // Through the adapter: the raw prefills know nothing of ordering keys (keySeq, chains).
    else
      for (let i = 0; i < made.length; i += 100)
        await ns.outbox.findOrCreateMany(
          made
            .slice(i, i + 100)
            .map((event, j) => ({ ...event, orderingKey: `key-${tag}-${(i + j) % keys}` })),
        )
    processes = await RelayProcesses.launch(
      Array.from({ length: relays }, (_, k) =>
        childSpec(target, ns.endpoint, side, url, `${side}-${tag}-${k}`, config, {
          reportEveryMs: 5,
          rss: false,
        }),
      ),
    )
    const started = performance.now()
    processes.start()
    await processes.waitForPublished(events, 180_000)
    const seconds = (performance.now() - started) / 1000
    const stopped = await processes.stop()
    processes = undefined
    const cpuMs = stopped.reduce((sum, child) => sum + child.cpuMs, 0)
    return { perSecond: events / seconds, cpuUsPerEvent: (cpuMs * 1000) / events }
  } finally {
    processes?.kill()
    await ns.dispose().catch(() => undefined)
  }
}
