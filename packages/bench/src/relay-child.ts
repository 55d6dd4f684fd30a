/**
 * The relay process of the memory benchmark: one OutboxRelay draining a SQLite outbox that the
 * parent filled, reporting progress and its own RSS to the parent every 100 ms.
 * argv: <sqlite file> <table prefix> <nats url> <subject's stream> <events>
 */
import { readFileSync } from 'node:fs'
import { OutboxRelay } from '@txbox/core'
import { createJetStreamPublisher } from '@txbox/core/nats'
import { connect } from 'nats'
import { openSqlite } from './stores/sqlite-file.js'

const statusKb = (field: string): number => {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'))
  return Number(match?.[1] ?? 0)
}

const send = (message: Record<string, unknown>): void => {
  process.send?.(message)
}

const main = async (): Promise<void> => {
  const [file, prefix, url, , eventsText] = process.argv.slice(2)
  if (!file || !prefix || !url || !eventsText)
    throw new Error('usage: relay-child <file> <prefix> <nats> <stream> <events>')
  const events = Number(eventsText)
  const { store, close } = openSqlite(file, prefix)
  const nc = await connect({ servers: url })
  const relay = new OutboxRelay({
    outbox: store.outbox,
    publisher: createJetStreamPublisher({ connection: nc }),
    pollIntervalMs: 20,
    retention: { sentOlderThanDays: null, staleMinutes: null },
  })
  send({ type: 'ready', rssKb: statusKb('VmRSS') })
  relay.start()
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const published = relay.counters().published
      send({ type: 'progress', published, rssKb: statusKb('VmRSS') })
      if (published >= events) {
        clearInterval(timer)
        resolve()
      }
    }, 100)
  })
  await relay.stop()
  send({ type: 'done', rssKb: statusKb('VmRSS'), hwmKb: statusKb('VmHWM') })
  await nc.close()
  await close()
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  },
)
