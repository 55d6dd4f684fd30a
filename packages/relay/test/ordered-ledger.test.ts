/**
 * Per-key order under crashes and faults (issue 18, docs/CONTRACT.md "Ordering keys"), on
 * PostgreSQL: 1,000 ordering keys x 50 events enqueued by 4 concurrent producers in business
 * transactions (some rolled back), 4 txbox-relay child processes (two SIGKILLed mid-batch and
 * replaced), a private nats-server stopped and restarted mid-run, transient publish failures
 * (the keys of one subject family have no stream until the stream is widened mid-run, so their
 * heads are retried with backoff while their later events wait), and an InboxProcessor whose
 * handler fails transiently. Then, per key: JetStream stored the key's events in strictly
 * increasing keySeq; the ledger (written with the processed mark) holds every committed event
 * once, in strictly increasing keySeq, and, for keys one producer owns, in the order it
 * produced them; and a sampler never saw two events of one key claimed at once.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type EnqueueParams, InboxProcessor, silentLogger } from '@txbox/core'
import { createJetStreamInboxSource, ensureDurableConsumer, ensureStream } from '@txbox/core/nats'
import { createPostgresStore, type PostgresTransaction } from '@txbox/postgres'
import { connect, type JetStreamManager, type NatsConnection } from 'nats'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  buildRelay,
  freePort,
  NatsServerProcess,
  natsServerAvailable,
  RelayProcess,
  sleep,
  waitUntil,
} from './harness.js'

const postgresUrl = process.env.TXBOX_POSTGRES_URL
const required = process.env.TXBOX_REQUIRE_ALL === '1'
const haveNats = natsServerAvailable()

const KEYS = 1_000
const EVENTS_PER_KEY = 50
const PRODUCERS = 4
const EVENTS_PER_TRANSACTION = 20
/** Keys below this are each owned by one producer (its production order is checkable); the rest are shared. */
const OWNED_KEYS = 900
/** Keys whose events go to the subject family the stream does not cover at first. */
const isLateKey = (key: number): boolean => key % 50 === 7
/** Events whose first handler run fails (the consumer then holds the rest of their key). */
const failsOnce = (key: number, index: number): boolean => (key * 31 + index) % 97 === 0

const keyName = (key: number): string => (key % 2 === 0 ? `Order-${key}` : `order-${key} é`)

interface Planned {
  eventId: string
  key: number
  /** Position among the events its producer made for this key (owned keys only meaningful). */
  index: number
}

/** Each producer's events in production order: owned keys round-robin, shared keys spread over all producers. */
const plan = (): Planned[][] => {
  const producers: Planned[][] = Array.from({ length: PRODUCERS }, () => [])
  for (let index = 0; index < EVENTS_PER_KEY; index++) {
    for (let key = 0; key < KEYS; key++) {
      const producer = key < OWNED_KEYS ? key % PRODUCERS : (key + index) % PRODUCERS
      producers[producer]?.push({ eventId: `k${key}-e${index}`, key, index })
    }
  }
  return producers
}

describe('ordered ledger: per-key order across relays, crashes and retries', () => {
  const lacking = [
    ...(haveNats ? [] : ['the nats-server binary']),
    ...(postgresUrl ? [] : ['TXBOX_POSTGRES_URL']),
  ]
  let nats: NatsServerProcess | undefined
  let stateDir: string | undefined

  beforeAll(async () => {
    if (lacking.length > 0) return
    stateDir = mkdtempSync(join(tmpdir(), 'txbox-ordered-ledger-'))
    nats = new NatsServerProcess(await freePort(), join(stateDir, 'nats'))
    await nats.start()
    buildRelay()
  }, 300_000)

  afterAll(async () => {
    await nats?.stop()
    if (stateDir) rmSync(stateDir, { recursive: true, force: true })
  })

  it.skipIf(lacking.length > 0 && !required)(
    `PostgreSQL, ${KEYS} keys x ${EVENTS_PER_KEY} events, 4 relays with SIGKILLs, a NATS restart, retried publishes${lacking.length > 0 ? ` (missing: ${lacking.join(', ')})` : ''}`,
    async () => {
      if (lacking.length > 0) throw new Error(`TXBOX_REQUIRE_ALL=1 but missing ${lacking.join(', ')}`)
      await runOrderedLedger(postgresUrl as string, nats as NatsServerProcess)
    },
    600_000,
  )
})

const runOrderedLedger = async (url: string, nats: NatsServerProcess): Promise<void> => {
  const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`
  const schema = `ordered_${suffix}`
  const stream = `ORDERED_${suffix.toUpperCase()}`
  const subject = `ordered${suffix}`
  const pool = new pg.Pool({ connectionString: url, max: 16 })
  const store = createPostgresStore({ pool, schema })
  await store.migrate()
  await pool.query(
    `CREATE TABLE "${schema}".ledger (row_id bigserial PRIMARY KEY, event_id text NOT NULL, ordering_key text NOT NULL, key_seq bigint NOT NULL)`,
  )
  const nc: NatsConnection = await connect({
    servers: nats.url,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
  })
  const jsm = await nc.jetstreamManager()
  // The late family is left out until mid-run: publishes to it fail ("no stream") and are retried.
  await ensureStream(jsm, { name: stream, subjects: [`${subject}.main.>`], duplicateWindowMs: 600_000 })
  await ensureDurableConsumer(jsm, { stream, durable: 'ordered', ackWaitMs: 5_000 })

  const relays: RelayProcess[] = []
  /** The producers, awaited before the schema is dropped even when the test failed early. */
  let producing: Promise<unknown> | undefined
  const processor = new InboxProcessor<PostgresTransaction>({
    store,
    source: createJetStreamInboxSource({ connection: nc, stream, durable: 'ordered' }),
    concurrency: 16,
    maxDeliveries: 1_000,
    leaseMs: 10_000,
    backoff: { baseMs: 50, maxMs: 400, jitter: 0.2 },
    logger: silentLogger,
    handler: async ({ event, message, tx }) => {
      const [key, index] = (event.eventId.slice(1).split('-e') as [string, string]).map(Number) as [
        number,
        number,
      ]
      if (failsOnce(key, index) && message.deliveryCount === 1) throw new Error('transient: downstream busy')
      // The store's own transaction is a pooled client (`store.transaction`).
      await (tx as pg.PoolClient).query(
        `INSERT INTO "${schema}".ledger (event_id, ordering_key, key_seq) VALUES ($1, $2, $3)`,
        [event.eventId, message.orderingKey ?? '', message.keySeq ?? -1],
      )
    },
  })

  try {
    await processor.start()
    const relayArgs = [
      '--store',
      'postgres',
      '--url',
      url,
      '--schema',
      schema,
      '--nats',
      nats.url,
      '--batch-size',
      '100',
      '--concurrency',
      '32',
      '--lease-ms',
      '2000',
      '--poll-interval-ms',
      '100',
      // The late keys' heads are retried until the stream covers them: never dead-lettered.
      '--max-attempts',
      '1000',
      '--backoff-base-ms',
      '50',
      '--backoff-max-ms',
      '1000',
      '--publish-timeout-ms',
      '1500',
      // info: the harness waits for the "relay started" line.
      '--log-level',
      'info',
    ]
    const startRelay = async (): Promise<RelayProcess> => {
      const relay = new RelayProcess(`ordered-relay-${relays.length + 1}`, relayArgs)
      relays.push(relay)
      await relay.started()
      return relay
    }
    for (let n = 0; n < 4; n++) await startRelay()

    // Sampler: at no moment two events of one key claimed (publishing) at once.
    let sampling = true
    let samples = 0
    const doubleClaims: string[] = []
    const sampler = (async () => {
      while (sampling) {
        const { rows } = await pool
          .query<{ ordering_key: string; held: string }>(
            `SELECT ordering_key, count(*) AS held FROM "${schema}".txbox_outbox WHERE status = 'publishing' AND ordering_key IS NOT NULL GROUP BY ordering_key HAVING count(*) > 1`,
          )
          .catch(() => ({ rows: [] }))
        samples++
        for (const row of rows) doubleClaims.push(`${row.ordering_key} x${row.held}`)
        await sleep(100)
      }
    })()

    // Producers: business transactions of 20 events; every 9th is rolled back (its events never exist).
    const producers = plan()
    const committed = new Set<string>()
    let rolledBack = 0
    const produceAll = async (events: Planned[], producer: number): Promise<void> => {
      for (let start = 0, round = 0; start < events.length; start += EVENTS_PER_TRANSACTION, round++) {
        const chunk = events.slice(start, start + EVENTS_PER_TRANSACTION)
        if (round % 9 === 8) {
          await transaction(
            pool,
            chunk.map((event) => ({ ...event, eventId: `rb-${producer}-${round}-${event.eventId}` })),
            true,
          )
          rolledBack += chunk.length
        }
        await transaction(pool, chunk, false)
        for (const event of chunk) committed.add(event.eventId)
      }
    }
    const transaction = async (db: pg.Pool, events: Planned[], rollback: boolean): Promise<void> => {
      const client = await db.connect()
      try {
        await client.query('BEGIN')
        const params: EnqueueParams[] = events.map((event) => ({
          eventId: event.eventId,
          subject: `${subject}.${isLateKey(event.key) ? 'late' : 'main'}.orders`,
          payload: JSON.stringify({ key: event.key, index: event.index }),
          orderingKey: keyName(event.key),
        }))
        await store.outbox.findOrCreateMany(params, { tx: client })
        await client.query(rollback ? 'ROLLBACK' : 'COMMIT')
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {})
        throw error
      } finally {
        client.release()
      }
    }
    producing = Promise.all(producers.map((events, producer) => produceAll(events, producer)))

    const total = KEYS * EVENTS_PER_KEY
    const sentAtLeast = async (count: number): Promise<void> => {
      const reached = await waitUntil(
        async () => (await store.outbox.getCountByStatus()).sent >= count,
        240_000,
        100,
      )
      expect(reached, `the relays never reached ${count} sent events`).toBe(true)
    }
    const heldBy = async (relay: RelayProcess): Promise<number> => {
      const { rows } = await pool.query<{ held: string }>(
        `SELECT count(*) AS held FROM "${schema}".txbox_outbox WHERE status = 'publishing' AND claimed_by = $1`,
        [relay.name],
      )
      return Number(rows[0]?.held ?? 0)
    }
    const killMidBatch = async (relay: RelayProcess): Promise<number> => {
      let held = 0
      await waitUntil(
        async () => {
          held = await heldBy(relay)
          return held > 0
        },
        15_000,
        1,
      )
      relay.kill('SIGKILL')
      return held
    }

    const heldAtKill: number[] = []
    await sentAtLeast(total / 10)
    heldAtKill.push(await killMidBatch(relays[0] as RelayProcess))
    await startRelay()
    await sentAtLeast(total / 5)
    await nats.stop()
    await sleep(1_500)
    await nats.start()
    // Now the late keys get a stream: their retried heads go out, then the rest of their keys.
    // The JetStream API answers again only once the client has reconnected.
    const widened = await waitUntil(
      async () => {
        try {
          const info = await jsm.streams.info(stream)
          await jsm.streams.update(stream, {
            ...info.config,
            subjects: [`${subject}.main.>`, `${subject}.late.>`],
          })
          return true
        } catch {
          return false
        }
      },
      30_000,
      250,
    )
    expect(widened, 'the stream could not be widened after the NATS restart').toBe(true)
    await sentAtLeast(total / 2)
    heldAtKill.push(await killMidBatch(relays[1] as RelayProcess))
    await startRelay()
    await producing

    const drained = await waitUntil(
      async () => {
        const [outbox, inbox] = await Promise.all([
          store.outbox.getCountByStatus(),
          store.inbox.getCountByStatus(),
        ])
        return outbox.sent === total && inbox.processed === total
      },
      300_000,
      250,
    )
    sampling = false
    await sampler
    const [outboxCounts, inboxCounts] = await Promise.all([
      store.outbox.getCountByStatus(),
      store.inbox.getCountByStatus(),
    ])
    const live = relays.filter((relay) => relay.child.exitCode === null && relay.child.signalCode === null)
    for (const relay of live) relay.kill('SIGTERM')
    const exitCodes = await Promise.all(live.map((relay) => relay.exit))
    await processor.stop()
    const counters = processor.counters()
    const retried = relays.reduce((sum, relay) => sum + (relay.counters()?.retried ?? 0), 0)

    // JetStream's order per key: the stream's messages in sequence order.
    const streamOrder = await readStreamOrder(nc, jsm, stream)
    const { rows } = await pool.query<{ event_id: string; ordering_key: string; key_seq: string }>(
      `SELECT event_id, ordering_key, key_seq FROM "${schema}".ledger ORDER BY row_id`,
    )
    const figures = {
      committed: committed.size,
      rolledBack,
      outbox: outboxCounts,
      inbox: inboxCounts,
      ledgerRows: rows.length,
      streamMessages: streamOrder.messages,
      relaysKilled: heldAtKill.length,
      eventsHeldByKilledRelays: heldAtKill,
      publishesRetried: retried,
      consumerHeldForOrder: counters.heldForOrder,
      handlerErrors: counters.handlerErrors,
      samples,
    }
    console.log(`[ordered-ledger] ${JSON.stringify(figures)}`)

    expect(drained, JSON.stringify(figures)).toBe(true)
    expect(committed.size).toBe(total)
    // Every committed event in the ledger once, nothing rolled back.
    const ids = rows.map((row) => row.event_id)
    expect(new Set(ids).size).toBe(ids.length)
    expect(ids.filter((id) => !committed.has(id))).toEqual([])
    expect(ids.length).toBe(total)
    // Per key, the consumer processed in strictly increasing keySeq, and owned keys in production order.
    const outOfOrder: string[] = []
    const lastSeq = new Map<string, number>()
    const lastIndex = new Map<string, number>()
    for (const row of rows) {
      const seq = Number(row.key_seq)
      const [key, index] = row.event_id.slice(1).split('-e').map(Number) as [number, number]
      if (row.ordering_key !== keyName(key))
        outOfOrder.push(`${row.event_id} carried key ${row.ordering_key}`)
      if (seq <= (lastSeq.get(row.ordering_key) ?? 0))
        outOfOrder.push(`${row.event_id} keySeq ${seq} after ${lastSeq.get(row.ordering_key)}`)
      lastSeq.set(row.ordering_key, seq)
      if (key < OWNED_KEYS) {
        if (index <= (lastIndex.get(row.ordering_key) ?? -1))
          outOfOrder.push(`${row.event_id} processed after index ${lastIndex.get(row.ordering_key)}`)
        lastIndex.set(row.ordering_key, index)
      }
    }
    expect(outOfOrder.slice(0, 20)).toEqual([])
    // JetStream stored each key's events in strictly increasing keySeq (a republish is deduplicated).
    expect(streamOrder.violations.slice(0, 20)).toEqual([])
    expect(streamOrder.messages).toBe(total)
    // Never two events of one key claimed at once.
    expect(samples).toBeGreaterThan(10)
    expect(doubleClaims.slice(0, 20)).toEqual([])
    // The faults happened: kills mid-batch, retried publishes, consumer holds.
    expect(heldAtKill.every((held) => held > 0)).toBe(true)
    expect(retried).toBeGreaterThan(0)
    // Consumer holds (consumerHeldForOrder in the figures) depend on timing: 3 of 516 handler
    // failures in the first run. Reported, not asserted; the hold itself is unit-tested in core.
    expect(exitCodes.every((code) => code === 0)).toBe(true)
  } finally {
    for (const relay of relays)
      if (relay.child.exitCode === null && relay.child.signalCode === null) relay.kill('SIGKILL')
    await processor.stop().catch(() => {})
    await producing?.catch(() => {})
    await jsm.streams.delete(stream).catch(() => false)
    await nc.close()
    await pool.query(`DROP SCHEMA "${schema}" CASCADE`).catch(() => {})
    await pool.end()
  }
}

/** Reads the whole stream in sequence order and checks each key's Txbox-Key-Seq strictly increases. */
const readStreamOrder = async (
  nc: NatsConnection,
  jsm: JetStreamManager,
  stream: string,
): Promise<{ messages: number; violations: string[] }> => {
  const total = (await jsm.streams.info(stream)).state.messages
  const consumer = await nc.jetstream().consumers.get(stream)
  const violations: string[] = []
  const last = new Map<string, number>()
  let messages = 0
  while (messages < total) {
    const batch = await consumer.fetch({ max_messages: 1_000, expires: 5_000 })
    let got = 0
    for await (const message of batch) {
      got++
      messages++
      const key = message.headers?.get('Txbox-Ordering-Key') ?? ''
      const seq = Number(message.headers?.get('Txbox-Key-Seq') ?? Number.NaN)
      if (!(seq > (last.get(key) ?? 0)))
        violations.push(`stream #${message.seq}: key ${key} keySeq ${seq} after ${last.get(key)}`)
      last.set(key, seq)
    }
    if (got === 0) break
  }
  return { messages, violations }
}
