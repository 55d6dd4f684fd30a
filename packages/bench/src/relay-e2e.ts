import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { OutboxRelay } from '@txbox/core'
import { createJetStreamPublisher } from '@txbox/core/nats'
import { connect, type NatsConnection } from 'nats'
import { median } from './harness.js'
import type { RelayRow } from './results.js'
import { makeEvents } from './scenarios.js'
import type { Target } from './types.js'

export interface RelayConfig {
  readonly batchSize: number
  readonly concurrency: number
}

/** The relay's defaults. */
export const DEFAULT_RELAY: RelayConfig = { batchSize: 100, concurrency: 32 }
/** Bigger batches: fewer claim/mark round trips and fewer stalls at batch boundaries. */
export const TUNED_RELAY: RelayConfig = { batchSize: 500, concurrency: 256 }

export const configLabel = (config: RelayConfig): string =>
  `batchSize ${config.batchSize}, concurrency ${config.concurrency}${
    config.batchSize === DEFAULT_RELAY.batchSize && config.concurrency === DEFAULT_RELAY.concurrency
      ? ' (defaults)'
      : ''
  }`

export const RELAY_MODE =
  'OutboxRelay + JetStreamPublisher from @txbox/core; N relays = N OutboxRelay instances in one process, each with its own store connection (where the driver allows) and its own NATS connection'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

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

/**
 * Events per second from a pre-filled outbox to acknowledged JetStream messages, timed from
 * the relays' start to the moment every event is marked sent.
 */
export const runRelay = async (
  target: Target,
  quick: boolean,
  log: (line: string) => void,
  config: RelayConfig = DEFAULT_RELAY,
): Promise<RelayRow[]> => {
  const url = process.env.TXBOX_NATS_URL
  const full = target.relayEvents ?? 20_000
  const events = quick ? Math.min(2_000, full) : full
  const runs = quick ? 1 : Math.min(3, target.maxRuns ?? 3)
  const rows: RelayRow[] = []
  for (const relays of [1, 4]) {
    if (!url) {
      rows.push({
        store: target.name,
        relays,
        events,
        config: configLabel(config),
        notRun: 'TXBOX_NATS_URL is not set',
      })
      continue
    }
    try {
      const samples = await withStream(url, async (stream) => {
        const out: number[] = []
        let stored = 0
        for (let run = 0; run < runs; run++) {
          out.push(await relayOnce(target, url, stream.subject, events, relays, `r${relays}-${run}`, config))
          stored += events
          const inStream = await streamMessages(url, stream.name)
          if (inStream !== stored)
            throw new Error(`the stream holds ${inStream} messages, expected ${stored}`)
        }
        return out
      })
      const row: RelayRow = {
        store: target.name,
        relays,
        events,
        eventsPerSecond: median(samples),
        samples,
        config: configLabel(config),
      }
      rows.push(row)
      log(
        `${target.name} relay x${relays} (${configLabel(config)}): ${row.eventsPerSecond?.toFixed(0)} events/s (${events} events)`,
      )
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      log(`${target.name} relay x${relays} failed: ${message}`)
      rows.push({
        store: target.name,
        relays,
        events,
        config: configLabel(config),
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
  tag: string,
  config: RelayConfig,
): Promise<number> => {
  const ns = await target.namespace()
  const connections: NatsConnection[] = []
  try {
    const batch = makeEvents(`relay-${tag}-${randomBytes(3).toString('hex')}`, events, subject)
    await ns.prefill(batch, false)
    const instances: OutboxRelay[] = []
    for (let k = 0; k < relays; k++) {
      const nc = await connect({ servers: url, timeout: 5_000 })
      connections.push(nc)
      instances.push(
        new OutboxRelay({
          outbox: (await ns.claimer(k)).outbox,
          publisher: createJetStreamPublisher({ connection: nc }),
          workerId: `bench-${tag}-${k}`,
          pollIntervalMs: 20,
          batchSize: config.batchSize,
          concurrency: config.concurrency,
          retention: { sentOlderThanDays: null, staleMinutes: null },
        }),
      )
    }
    const started = performance.now()
    for (const relay of instances) relay.start()
    const deadline = Date.now() + 120_000
    const published = () => instances.reduce((sum, relay) => sum + relay.counters().published, 0)
    while (published() < events) {
      if (Date.now() > deadline) throw new Error(`only ${published()} of ${events} published in 120 s`)
      const failed = instances.reduce(
        (sum, relay) => sum + relay.counters().failed + relay.counters().storeErrors,
        0,
      )
      if (failed > 0) throw new Error(`${failed} publish or store errors`)
      await sleep(5)
    }
    const seconds = (performance.now() - started) / 1000
    await Promise.all(instances.map((relay) => relay.stop()))
    return events / seconds
  } finally {
    for (const nc of connections) await nc.close().catch(() => undefined)
    await ns.dispose().catch(() => undefined)
  }
}
