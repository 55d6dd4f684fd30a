import { randomUUID } from 'node:crypto'
import {
  type EnqueueParams,
  type InboxParams,
  type OutboxRepository,
  setOpenTelemetryMode,
} from '@txbox/core'
import type { Work } from './harness.js'
import type { Claimer, Namespace } from './types.js'

/**
 * Ordering keys in the keyed scenarios (issue 18's goal: keyed >= 0.8 of unkeyed with >= 100
 * active keys). Both sides are txbox, so the ratio is what ordering costs. 1,000 keys: more heads
 * than the 4 claimers x 100 can hold at once, as in a service keyed by aggregate; with fewer keys
 * than the claimers' capacity every claim walks the backlog of keys whose head is in flight
 * (`TXBOX_BENCH_ACTIVE_KEYS=200` shows that regime; docs/BENCHMARKS.md has both).
 */
export const ACTIVE_KEYS = Number(process.env.TXBOX_BENCH_ACTIVE_KEYS ?? 1_000)
if (!Number.isSafeInteger(ACTIVE_KEYS) || ACTIVE_KEYS < 1)
  throw new Error(
    `TXBOX_BENCH_ACTIVE_KEYS must be a positive integer; got ${process.env.TXBOX_BENCH_ACTIVE_KEYS}`,
  )

export const SCENARIOS = [
  'enqueue-one',
  'enqueue-batch',
  'enqueue-tx',
  'enqueue-tx-8',
  'enqueue-tx-100',
  'enqueue-otel',
  'drain-1',
  'drain-4',
  'enqueue-keyed',
  'drain-keyed',
  'inbox',
] as const
export type ScenarioName = (typeof SCENARIOS)[number]

export interface ScenarioInfo {
  readonly title: string
  /**
   * The goal for adapter/raw (issue 16): 0.6 for single-event operations, 0.8 for batched ones
   * and for every enqueue in the caller's transaction; 0.98 for enqueue-otel, whose "raw" side
   * is txbox itself with OpenTelemetry off.
   */
  readonly target: number
  /** Events per run at scale 1 (full mode). */
  readonly events: number
}

export const SCENARIO_INFO: Record<ScenarioName, ScenarioInfo> = {
  'enqueue-one': { title: 'enqueue 1 per call (autocommit)', target: 0.6, events: 1000 },
  'enqueue-batch': { title: 'enqueue 100 per call', target: 0.8, events: 5000 },
  'enqueue-tx': { title: "enqueue in the caller's transaction", target: 0.8, events: 500 },
  'enqueue-tx-8': {
    title: "enqueue in the caller's transaction, 8 clients at once",
    target: 0.8,
    events: 2000,
  },
  'enqueue-tx-100': {
    title: "enqueue 100 in the caller's transaction",
    target: 0.8,
    events: 5000,
  },
  'enqueue-otel': {
    title: 'enqueue 1 per call, @opentelemetry/api installed and no SDK (raw: telemetry off)',
    target: 0.98,
    events: 1000,
  },
  'drain-1': { title: 'claim 100 + markManyAsSent, 1 claimer', target: 0.8, events: 5000 },
  'drain-4': { title: 'claim 100 + markManyAsSent, 4 claimers', target: 0.8, events: 5000 },
  'enqueue-keyed': {
    title: `enqueue 100 per call over ${ACTIVE_KEYS} ordering keys (raw: the same events unkeyed)`,
    target: 0.8,
    events: 5000,
  },
  'drain-keyed': {
    title: `claim 100 + markManyAsSent, 4 claimers, ${ACTIVE_KEYS} ordering keys (raw: the same events unkeyed)`,
    target: 0.8,
    events: 5000,
  },
  inbox: { title: 'inbox claim + markAsProcessed', target: 0.6, events: 1000 },
}

export const BATCH = 100
/** Concurrent clients of enqueue-tx-8: the size of the bench's PostgreSQL and MySQL pools. */
export const TX_CLIENTS = 8
const LEASE_MS = 60_000
const PAYLOAD = JSON.stringify({
  orderId: 'ord_0000000000',
  customerId: 'cus_0000000000',
  total: 12345,
  currency: 'EUR',
  items: [{ sku: 'SKU-1', quantity: 2 }],
  note: 'a typical small domain event of about two hundred bytes',
})

export const makeEvents = (tag: string, count: number, subject = 'bench.orders.created'): EnqueueParams[] =>
  Array.from({ length: count }, (_, i) => ({ eventId: `${tag}-${i}`, subject, payload: PAYLOAD }))

/** `makeEvents` spread round-robin over {@link ACTIVE_KEYS} ordering keys (unkeyed when `keyed` is false). */
const makeKeyedEvents = (tag: string, count: number, keyed: boolean): EnqueueParams[] =>
  makeEvents(tag, count).map((event, i) =>
    keyed ? { ...event, orderingKey: `order-${tag}-${i % ACTIVE_KEYS}` } : event,
  )

let streamSeq = 0
const makeMessages = (tag: string, count: number): InboxParams[] =>
  Array.from({ length: count }, (_, i) => ({
    eventId: `${tag}-${i}`,
    subject: 'bench.orders.created',
    payload: PAYLOAD,
    stream: 'BENCH',
    streamSeq: ++streamSeq,
  }))

const chunks = <T>(values: readonly T[], size: number): T[][] => {
  const out: T[][] = []
  for (let i = 0; i < values.length; i += size) out.push(values.slice(i, i + size))
  return out
}

const drain = async (
  claimers: readonly Claimer[],
  side: 'adapter' | 'raw',
  expected: number,
  tag: string,
): Promise<void> => {
  let total = 0
  await Promise.all(
    claimers.map(async (claimer, k) => {
      const workerId = `${tag}-w${k}`
      for (;;) {
        let got: number
        if (side === 'raw') got = await claimer.rawClaimAndMark(workerId, BATCH)
        else {
          const events = await claimer.outbox.claim({ limit: BATCH, leaseMs: LEASE_MS, workerId })
          got = events.length
          if (got > 0) {
            const notApplied = await claimer.outbox.markManyAsSent(
              events.map((event) => event.eventId),
              { workerId },
            )
            if (notApplied.length > 0) throw new Error(`${notApplied.length} events were not marked sent`)
          }
        }
        if (got === 0) return
        total += got
      }
    }),
  )
  if (total !== expected) throw new Error(`${side}: drained ${total} events, expected ${expected}`)
}

/**
 * The keyed drain (both sides through the adapter): an empty claim does not mean done, since
 * the next events of a key become claimable only when its head is marked sent by another
 * claimer; each claimer goes on until every event is sent.
 */
const drainUntilAllSent = async (
  claimers: readonly Claimer[],
  expected: number,
  tag: string,
): Promise<void> => {
  let total = 0
  await Promise.all(
    claimers.map(async (claimer, k) => {
      const workerId = `${tag}-w${k}`
      while (total < expected) {
        const events = await claimer.outbox.claim({ limit: BATCH, leaseMs: LEASE_MS, workerId })
        if (events.length === 0) {
          await new Promise<void>((resolve) => setImmediate(resolve))
          continue
        }
        const notApplied = await claimer.outbox.markManyAsSent(
          events.map((event) => event.eventId),
          { workerId },
        )
        if (notApplied.length > 0) throw new Error(`${notApplied.length} events were not marked sent`)
        total += events.length
      }
    }),
  )
  if (total !== expected) throw new Error(`drained ${total} events, expected ${expected}`)
}

/**
 * The adapter's work and its raw twin for one run of a scenario. `events` is the amount of
 * work; the same events (fresh ids per run and side) go through both.
 */
export const makeWork = async (
  scenario: ScenarioName,
  ns: Namespace,
  side: 'adapter' | 'raw',
  events: number,
  tag: string,
): Promise<Work> => {
  const id = `${tag}-${side}-${randomUUID().slice(0, 8)}`
  switch (scenario) {
    case 'enqueue-one': {
      const batch = makeEvents(id, events)
      return {
        events,
        calls: events,
        async run() {
          if (side === 'adapter') for (const event of batch) await ns.outbox.findOrCreate(event)
          else for (const event of batch) await ns.rawInsertOne(event)
        },
      }
    }
    case 'enqueue-otel': {
      // Both sides are txbox: the API is installed in this workspace and no SDK is
      // registered, so "adapter" measures what merely having it costs an enqueue.
      const batch = makeEvents(id, events)
      return {
        events,
        calls: events,
        async run() {
          setOpenTelemetryMode(side === 'adapter' ? 'auto' : 'off')
          try {
            for (const event of batch) await ns.outbox.findOrCreate(event)
          } finally {
            setOpenTelemetryMode('auto')
          }
        },
      }
    }
    case 'enqueue-batch': {
      const groups = chunks(makeEvents(id, events), BATCH)
      return {
        events,
        calls: groups.length,
        async run() {
          if (side === 'adapter') for (const group of groups) await ns.outbox.findOrCreateMany(group)
          else for (const group of groups) await ns.rawInsertMany(group)
        },
      }
    }
    case 'enqueue-tx':
    case 'enqueue-tx-8':
    case 'enqueue-tx-100': {
      const fn = side === 'adapter' ? ns.adapterTx : ns.rawTx
      if (typeof fn === 'string') throw new NotRun(fn)
      const shape = TX_SHAPES[scenario]
      if (shape.clients > 1 && ns.concurrentTx !== undefined) throw new NotRun(ns.concurrentTx)
      const transactions = transactionsOf(scenario, makeEvents(id, events))
      return {
        events,
        calls: transactions.length,
        run: () => runTransactions(fn, transactions, shape.clients),
      }
    }
    case 'drain-1':
    case 'drain-4': {
      const claimers = await Promise.all(
        Array.from({ length: scenario === 'drain-1' ? 1 : 4 }, (_, k) => ns.claimer(k)),
      )
      const batch = makeEvents(id, events)
      return {
        events,
        calls: Math.ceil(events / BATCH),
        setup: () => ns.prefill(batch, side === 'raw'),
        run: () => drain(claimers, side, events, id),
      }
    }
    case 'enqueue-keyed': {
      const groups = chunks(makeKeyedEvents(id, events, side === 'adapter'), BATCH)
      return {
        events,
        calls: groups.length,
        async run() {
          for (const group of groups) await ns.outbox.findOrCreateMany(group)
        },
      }
    }
    case 'drain-keyed': {
      const claimers = await Promise.all(Array.from({ length: 4 }, (_, k) => ns.claimer(k)))
      const batch = makeKeyedEvents(id, events, side === 'adapter')
      return {
        events,
        calls: Math.ceil(events / BATCH),
        // Through the adapter on both sides: the raw prefills know nothing of ordering keys.
        async setup() {
          for (const group of chunks(batch, BATCH)) await ns.outbox.findOrCreateMany(group)
        },
        run: () => drainUntilAllSent(claimers, events, id),
      }
    }
    case 'inbox': {
      const messages = makeMessages(id, events)
      const workerId = `${id}-w`
      return {
        events,
        calls: events,
        async run() {
          if (side === 'raw') {
            for (const message of messages) await ns.rawInboxClaimAndMark(message, workerId)
            return
          }
          for (const message of messages) {
            const { shouldProcess } = await ns.inbox.claim(message, { leaseMs: LEASE_MS, workerId })
            if (shouldProcess) await ns.inbox.markAsProcessed(message.eventId)
          }
        },
      }
    }
  }
}

export type TxScenario = 'enqueue-tx' | 'enqueue-tx-8' | 'enqueue-tx-100'

/** Concurrent clients and events per transaction of each enqueue-in-transaction scenario. */
export const TX_SHAPES: Record<TxScenario, { clients: number; eventsPerTx: number }> = {
  'enqueue-tx': { clients: 1, eventsPerTx: 1 },
  'enqueue-tx-8': { clients: TX_CLIENTS, eventsPerTx: 1 },
  'enqueue-tx-100': { clients: 1, eventsPerTx: BATCH },
}

/** Splits `events` into the transactions of a scenario. */
export const transactionsOf = <T>(scenario: TxScenario, items: readonly T[]): T[][] =>
  chunks(items, TX_SHAPES[scenario].eventsPerTx)

/**
 * Runs every transaction through `fn` from `clients` concurrent loops: each client takes the
 * next transaction as soon as its previous one committed.
 */
export const runTransactions = async <T>(
  fn: (items: readonly T[], n: number) => Promise<void>,
  transactions: readonly (readonly T[])[],
  clients: number,
): Promise<void> => {
  let next = 0
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < transactions.length) {
        const n = next++
        await fn(transactions[n] as readonly T[], n)
      }
    }),
  )
}

/**
 * The adapter's side of an enqueue in the caller's transaction: `findOrCreate` for one event
 * (the single-event path every request takes), `findOrCreateMany` for more.
 */
export const enqueueIn = async <Tx>(
  outbox: OutboxRepository<Tx>,
  events: readonly EnqueueParams[],
  tx: Tx,
): Promise<unknown> => {
  const [only] = events
  return events.length === 1 && only
    ? outbox.findOrCreate(only, { tx })
    : outbox.findOrCreateMany(events, { tx })
}

/** A scenario a store cannot run, with the reason for the report. */
export class NotRun extends Error {
  override name = 'NotRun'
}
