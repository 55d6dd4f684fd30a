/**
 * A relay process: txbox's OutboxRelay or the raw relay, on a namespace the parent created
 * and filled, reporting progress (and its own RSS) to the parent until told to stop.
 * argv: <RelayChildSpec as JSON>
 */
import { readFileSync } from 'node:fs'
import { OutboxRelay } from '@txbox/core'
import { createJetStreamPublisher } from '@txbox/core/nats'
import { connect } from 'nats'
import { openEndpoint } from './raw-relay/open-endpoint.js'
import { RawRelay } from './raw-relay/raw-relay.js'
import type { ChildMessage, ParentMessage, RelayChildSpec } from './relay-protocol.js'

const statusKb = (field: string): number => {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'))
  return Number(match?.[1] ?? 0)
}

/** Resolves once the message is written: the process exits right after the last one. */
const send = (message: ChildMessage): Promise<void> =>
  new Promise((resolve) => {
    if (!process.send) resolve()
    else process.send(message, undefined, undefined, () => resolve())
  })

const nextMessage = (type: ParentMessage['type']): Promise<void> =>
  new Promise((resolve) => {
    const listener = (message: ParentMessage) => {
      if (message.type !== type) return
      process.off('message', listener)
      resolve()
    }
    process.on('message', listener)
  })

const main = async (): Promise<void> => {
  // As in the parent: the AWS SDK's Node-version notice says nothing about the run.
  process.removeAllListeners('warning')
  process.on('warning', (warning) => {
    if (!`${warning.name} ${warning.message}`.includes('NodeVersionSupportWarning')) console.warn(warning)
  })
  const spec = JSON.parse(process.argv[2] ?? 'null') as RelayChildSpec | null
  if (!spec) throw new Error('usage: relay-child <spec as JSON>')
  const opened = await openEndpoint(spec.endpoint)
  // The relay CLI connects like this, and docs/RELAY.md recommends it: both relays get it.
  const nc = await connect({ servers: spec.natsUrl, noAsyncTraces: true })
  let relay: { start(): void; stop(): Promise<void>; counters(): { published: number; errors: number } }
  if (spec.relay === 'raw') {
    if (!opened.raw) throw new Error(`no raw relay for ${spec.endpoint.store}`)
    relay = new RawRelay({
      outbox: opened.raw,
      js: nc.jetstream(),
      workerId: spec.workerId,
      batchSize: spec.batchSize ?? 100,
      pollIntervalMs: spec.pollIntervalMs,
    })
  } else {
    const txbox = new OutboxRelay({
      outbox: opened.outbox,
      publisher: createJetStreamPublisher({ connection: nc }),
      workerId: spec.workerId,
      pollIntervalMs: spec.pollIntervalMs,
      ...(spec.batchSize === undefined ? {} : { batchSize: spec.batchSize }),
      ...(spec.concurrency === undefined ? {} : { concurrency: spec.concurrency }),
      ...(spec.batchesInFlight === undefined ? {} : { batchesInFlight: spec.batchesInFlight }),
      ...(spec.maxBatchBytes === undefined ? {} : { maxBatchBytes: spec.maxBatchBytes }),
      retention: { sentOlderThanDays: null, staleMinutes: null },
    })
    relay = {
      start: () => txbox.start(),
      stop: () => txbox.stop(),
      counters: () => {
        const counters = txbox.counters()
        return { published: counters.published, errors: counters.failed + counters.storeErrors }
      },
    }
  }
  const rss = () => (spec.rss ? statusKb('VmRSS') : 0)
  const stopped = nextMessage('stop')
  const started = nextMessage('start')
  await send({ type: 'ready', rssKb: rss() })
  await started
  const cpuAtStart = process.cpuUsage()
  relay.start()
  const timer = setInterval(() => {
    void send({ type: 'progress', ...relay.counters(), rssKb: rss() })
  }, spec.reportEveryMs)
  await stopped
  const cpu = process.cpuUsage(cpuAtStart)
  clearInterval(timer)
  await relay.stop()
  await send({
    type: 'done',
    ...relay.counters(),
    rssKb: statusKb('VmRSS'),
    hwmKb: statusKb('VmHWM'),
    cpuMs: (cpu.user + cpu.system) / 1000,
  })
  await nc.close()
  await opened.close()
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  },
)
