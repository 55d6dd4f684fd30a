/**
 * The ledger scenario, store-neutral: outbox (in business transactions, some rolled back)
 * -> txbox-relay child processes (SIGKILLed mid-batch) -> NATS (a lone server stopped and
 * restarted, or a cluster node killed and restarted) -> InboxProcessor (handler failing
 * transiently) -> a ledger written with the processed mark; the store's own server is
 * crashed and restarted mid-drain when the pair has a private one. Then the ledger is
 * checked and the figures are written as a report.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import {
  type EnqueueParams,
  type InboxCounts,
  InboxProcessor,
  type InboxRepository,
  type OutboxCounts,
  type OutboxRepository,
  type TransactionRunner,
} from '@txbox/core'
import { createJetStreamInboxSource, ensureDurableConsumer, ensureStream } from '@txbox/core/nats'
import { connect, type JetStreamManager, type NatsConnection } from 'nats'
import { expect } from 'vitest'
import { type NatsCluster, type NatsServerProcess, RelayProcess, sleep, waitUntil } from './harness.js'

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

/** What the handler's business write found. */
export type LedgerWrite = 'applied' | 'replayed'

/** One database pair: how to enqueue in a business transaction, the inbox side, the ledger. */
export interface LedgerPair<Tx> {
  /** Short store name: event ids, stream and report file names. */
  name: string
  /** What runs the store, for the report (e.g. "MariaDB 10.11, private instance"). */
  server: string
  /** txbox-relay flags for this store. */
  relayArgs: string[]
  outbox: OutboxRepository<Tx>
  inbox: InboxRepository<Tx>
  /**
   * Runs the handler's write and the processed mark in one transaction. Undefined for a
   * store without transactions (FerretDB): the handler's write is then idempotent instead.
   */
  transaction: TransactionRunner<Tx> | undefined
  /** One business transaction: an order plus its events; rolled back when `rollback`. */
  enqueue(events: EnqueueParams[], rollback: boolean): Promise<void>
  /** The handler's business write (inside the inbox transaction when there is one). */
  recordInLedger(tx: Tx | undefined, eventId: string): Promise<LedgerWrite>
  /** eventId -> effects in the ledger (an oracle read). */
  ledger(): Promise<Map<string, number>>
  inboxConcurrency: number
  /** Outbox events `publishing` under this worker's claim right now (an oracle read). */
  heldBy(workerId: string): Promise<number>
  /** Crashes the store's (private) server and starts it again; absent for a shared server. */
  restartServer?: (() => Promise<void>) | undefined
}

export interface Plan {
  transactions: number
  eventsPerTransaction: number
  /** Every k-th transaction is rolled back. */
  rollbackEvery: number
}

/** The NATS side of a run, and the fault injected into it while enqueues go on. */
export interface Broker {
  kind: 'nats' | 'nats-cluster'
  url: string
  /** Stream replicas (3 on the cluster). */
  replicas: number
  /** Breaks the broker and makes it whole again; says what it did. */
  fault(jsm: JetStreamManager, stream: string): Promise<string>
}

/** A lone private nats-server: stopped (SIGTERM) for 1.5 s, then started on the same store. */
export const loneServer = (nats: NatsServerProcess): Broker => ({
  kind: 'nats',
  url: nats.url,
  replicas: 1,
  fault: async () => {
    await nats.stop()
    await sleep(1_500)
    await nats.start()
    return 'nats-server stopped for 1.5 s and restarted'
  },
})

/**
 * A 3-node cluster: the node leading the test's stream is SIGKILLed, kept down for 3 s while
 * the other two elect a new leader and keep quorum, then started again (it catches up).
 */
export const clusterWithNodeKill = (cluster: NatsCluster): Broker => ({
  kind: 'nats-cluster',
  url: cluster.url,
  replicas: 3,
  fault: async (jsm, stream) => {
    const leader = (await jsm.streams.info(stream)).cluster?.leader
    if (!leader) throw new Error(`stream ${stream} reports no cluster leader`)
    const node = cluster.node(leader)
    await node.kill()
    await sleep(3_000)
    await node.start()
    return `stream leader ${leader} SIGKILLed for 3 s and restarted`
  },
})

/** One fault as the report shows it. */
export interface FaultFigures {
  target: 'broker' | 'store'
  fault: string
  /** From the fault until the server answered again. */
  downSeconds: number
  /** From the server answering again until the relays marked their next event sent (null: none left to send). */
  publishingResumedAfterSeconds: number | null
  /** From the server answering again until the inbox processed its next event: end-to-end recovery. */
  resumedAfterSeconds: number | null
  /** What was still to do at the fault: committed events not yet processed, dead letters aside. */
  backlog: number
}

/** The figures of one run: the report's row. */
export interface LedgerFigures {
  store: string
  server: string
  broker: Broker['kind']
  transactional: boolean
  committed: number
  rolledBack: number
  /** Committed events that ended neither in the ledger nor as a designed dead letter. */
  lost: number
  /** Rolled-back events found in the outbox, the inbox or the ledger. */
  rolledBackPublished: number
  /** Messages in the stream beyond one per committed, publishable event. */
  streamDuplicates: number
  /** Ledger effects beyond one per event. */
  duplicateEffects: number
  /** Events left `pending`/`publishing` in the outbox or `processing` in the inbox. */
  stuck: number
  /** Idempotent handler writes that found their effect already there (stores without transactions). */
  idempotentReplays: number
  relaysStarted: number
  relaysKilled: number
  eventsHeldByKilledRelays: number[]
  outboxPoison: number
  inboxPoison: number
  transientFailures: number
  handlerReruns: number
  inboxDuplicatesAcked: number
  faults: FaultFigures[]
  secondsToProduce: number
  /** From the last enqueue (or the last fault, if later) until everything was drained. */
  drainSeconds: number
  totalSeconds: number
}

/** Where reports go: TXBOX_LEDGER_REPORT_DIR, else `ledger/` beside TXBOX_REPORT_DIR (CI). */
export const ledgerReportDir = (): string | undefined => {
  if (process.env.TXBOX_LEDGER_REPORT_DIR) return process.env.TXBOX_LEDGER_REPORT_DIR
  const conformance = process.env.TXBOX_REPORT_DIR
  return conformance ? join(dirname(conformance), 'ledger') : undefined
}

const writeReport = (figures: LedgerFigures): void => {
  const dir = ledgerReportDir()
  if (!dir) return
  mkdirSync(dir, { recursive: true })
  writeFileSync(
    join(dir, `${figures.store}-${figures.broker}.json`),
    `${JSON.stringify({ ...figures, finishedAt: new Date().toISOString() }, null, 2)}\n`,
  )
}

/** Reads a count, or undefined while the store's server is down. */
const attempt = async <T>(read: () => Promise<T>): Promise<T | undefined> => {
  try {
    return await read()
  } catch {
    return undefined
  }
}

/** How {@link progressFrom} saw the count move: what a failed resumption check prints. */
interface ProgressTrace {
  seconds: number | null
  /** The count when the wait began, and the last one read (undefined: never read). */
  baseline: number | undefined
  last: number | undefined
  /** Reads that failed (the server still recovering). */
  failedReads: number
  /** Seconds from the start of the wait to the baseline read. */
  baselineAfterSeconds: number | null
}

/**
 * Seconds until `count` passes what it is now (null: not within `withinMs`, e.g. because
 * nothing was left to do), with what it read on the way. Reads that fail (the server still
 * recovering) count as no progress.
 */
const progressFrom = async (count: () => Promise<number>, withinMs: number): Promise<ProgressTrace> => {
  const from = Date.now()
  const trace: ProgressTrace = {
    seconds: null,
    baseline: undefined,
    last: undefined,
    failedReads: 0,
    baselineAfterSeconds: null,
  }
  const read = async (): Promise<number | undefined> => {
    const value = await attempt(count)
    if (value === undefined) trace.failedReads++
    else trace.last = value
    return value
  }
  while (trace.baseline === undefined && Date.now() - from < withinMs) {
    trace.baseline = await read()
    if (trace.baseline === undefined) await sleep(50)
  }
  if (trace.baseline === undefined) return trace
  trace.baselineAfterSeconds = (Date.now() - from) / 1_000
  const baseline = trace.baseline
  const done = await waitUntil(
    async () => ((await read()) ?? -1) > baseline,
    withinMs - (Date.now() - from),
    50,
  )
  if (done) trace.seconds = (Date.now() - from) / 1_000
  return trace
}

/**
 * Runs the scenario on one pair against one broker, writes the report, then checks it.
 */
export const runLedgerScenario = async <Tx>(
  pair: LedgerPair<Tx>,
  broker: Broker,
  plan: Plan,
): Promise<LedgerFigures> => {
  const started = Date.now()
  const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`
  const stream = `LEDGER_${pair.name.toUpperCase()}_${suffix.toUpperCase()}`
  const subject = `ledger${pair.name}${suffix}`
  const poisonSubject = `nostream${pair.name}${suffix}.orders`
  const nc: NatsConnection = await connect({
    servers: broker.url.split(','),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
  })
  const jsm = await nc.jetstreamManager()
  if (broker.replicas > 1) {
    // ensureStream makes single-replica streams; an R3 stream is the operator's choice.
    await jsm.streams.add({ name: stream, subjects: [`${subject}.>`], num_replicas: broker.replicas })
  }
  await ensureStream(jsm, { name: stream, subjects: [`${subject}.>`], duplicateWindowMs: 300_000 })
  await ensureDurableConsumer(jsm, { stream, durable: 'ledger', ackWaitMs: 5_000 })

  // What the producer did, by event id.
  const committed: string[] = []
  const rolledBack: string[] = []
  const outboxPoison = new Set<string>()
  const inboxPoison = new Set<string>()
  const transient = new Set<string>()
  const failedOnce = new Set<string>()
  const handlerRuns = new Map<string, number>()
  let idempotentReplays = 0
  let missingTraceparent = 0

  const processor = new InboxProcessor<Tx>({
    inbox: pair.inbox,
    source: createJetStreamInboxSource({ connection: nc, stream, durable: 'ledger' }),
    transaction: pair.transaction,
    concurrency: pair.inboxConcurrency,
    maxDeliveries: 4,
    leaseMs: 10_000,
    backoff: { baseMs: 50, maxMs: 400, jitter: 0.2 },
    handler: async ({ event, headers, tx }) => {
      if (headers.traceparent !== TRACEPARENT) missingTraceparent++
      if (inboxPoison.has(event.eventId)) throw new Error('poison: this event can never be handled')
      if (transient.has(event.eventId) && !failedOnce.has(event.eventId)) {
        failedOnce.add(event.eventId)
        throw new Error('transient: downstream busy')
      }
      if ((await pair.recordInLedger(tx, event.eventId)) === 'replayed') idempotentReplays++
      handlerRuns.set(event.eventId, (handlerRuns.get(event.eventId) ?? 0) + 1)
    },
  })
  await processor.start()

  const relayArgs = [
    ...pair.relayArgs,
    '--nats',
    broker.url,
    '--batch-size',
    '50',
    '--concurrency',
    '16',
    '--lease-ms',
    '2000',
    '--poll-interval-ms',
    '100',
    '--max-attempts',
    '12',
    '--backoff-base-ms',
    '50',
    '--backoff-max-ms',
    // A replicated stream that lost its leader answers again only after a new election, which
    // a loaded CI machine has stretched past the ~9 s that 12 attempts capped at 1 s cover:
    // there the relay must keep retrying, not dead-letter healthy events.
    broker.replicas > 1 ? '4000' : '1000',
    '--publish-timeout-ms',
    '1500',
    '--log-level',
    'info',
  ]
  const relays: RelayProcess[] = []
  const startRelay = async (): Promise<RelayProcess> => {
    const relay = new RelayProcess(`${pair.name}-relay-${relays.length + 1}`, relayArgs)
    relays.push(relay)
    await relay.started()
    return relay
  }

  let sequence = 0
  const transactionOnce = async (index: number): Promise<void> => {
    const rollback = index % plan.rollbackEvery === plan.rollbackEvery - 1
    const events: EnqueueParams[] = []
    for (let k = 0; k < plan.eventsPerTransaction; k++) {
      const n = sequence++
      const eventId = rollback ? `rb-${pair.name}-${n}` : `${pair.name}-${n}`
      let eventSubject = `${subject}.orders`
      if (!rollback) {
        if (n % 211 === 5) {
          outboxPoison.add(eventId)
          eventSubject = poisonSubject
        } else if (n % 173 === 7) inboxPoison.add(eventId)
        else if (n % 13 === 0) transient.add(eventId)
      }
      events.push({
        eventId,
        subject: eventSubject,
        payload: JSON.stringify({ n, order: `order-${n}`, note: 'ünïcödé 🎉' }),
        headers: JSON.stringify({ traceparent: TRACEPARENT, 'x-pair': pair.name }),
      })
    }
    await pair.enqueue(events, rollback)
    for (const event of events) (rollback ? rolledBack : committed).push(event.eventId)
  }
  let nextTransaction = 0
  const produce = async (count: number, pauseMs: number): Promise<void> => {
    for (let i = 0; i < count && nextTransaction < plan.transactions; i++) {
      await transactionOnce(nextTransaction++)
      if (pauseMs > 0) await sleep(pauseMs)
    }
  }
  const handleable = (): number => committed.length - outboxPoison.size - inboxPoison.size
  const backlog = async (): Promise<number> =>
    handleable() - ((await attempt(() => pair.inbox.getCountByStatus()))?.processed ?? 0)

  // SIGKILL a relay while it provably holds a claimed, unmarked batch (mid-batch): poll the
  // outbox for events `publishing` under its worker id, and kill the moment there are some.
  // The other relays run on: on a slow store they can drain the burst before the victim's next
  // poll, so while the victim holds nothing and the burst is done, a few more transactions
  // follow, one at a time, until it claims some (they are committed events like any other).
  // Pausing the others instead (SIGSTOP) froze a relay inside a FerretDB write-guard lock or a
  // SQLite write transaction, which then kept the victim from claiming at all.
  const heldAtKill: number[] = []
  const killMidBatch = async (relay: RelayProcess, burst: Promise<void>): Promise<void> => {
    let burstDone = false
    const done = () => {
      burstDone = true
    }
    void burst.then(done, done)
    let more: Promise<void> | undefined
    const deadline = Date.now() + 30_000
    let held = 0
    while (Date.now() < deadline) {
      held = (await attempt(() => pair.heldBy(relay.name))) ?? 0
      if (held > 0) break
      if (burstDone && more === undefined)
        more = transactionOnce(nextTransaction++).finally(() => {
          more = undefined
        })
      await sleep(1)
    }
    relay.kill('SIGKILL')
    heldAtKill.push(held)
    await burst
    await more
  }

  const faults: FaultFigures[] = []
  const resumptions: Promise<void>[] = []
  /** How the inbox's processed count moved after each fault: the message of a failed check. */
  const resumeTraces = new Map<FaultFigures, ProgressTrace>()
  /** Runs a fault, then measures in the background how long until events flow again. */
  const injectFault = async (target: FaultFigures['target'], run: () => Promise<string>): Promise<void> => {
    const before = await backlog()
    const down = Date.now()
    const fault = await run()
    const figures: FaultFigures = {
      target,
      fault,
      downSeconds: (Date.now() - down) / 1_000,
      publishingResumedAfterSeconds: null,
      resumedAfterSeconds: null,
      backlog: before,
    }
    faults.push(figures)
    resumptions.push(
      progressFrom(async () => (await pair.outbox.getCountByStatus()).sent, 30_000).then((trace) => {
        figures.publishingResumedAfterSeconds = trace.seconds
      }),
      progressFrom(async () => (await pair.inbox.getCountByStatus()).processed, 90_000).then((trace) => {
        figures.resumedAfterSeconds = trace.seconds
        resumeTraces.set(figures, trace)
      }),
    )
  }

  const phase = Math.ceil(plan.transactions / 6)
  // 1. One relay, paced enqueues.
  const first = await startRelay()
  await produce(phase, 15)
  // 2. Three relays at once.
  const second = await startRelay()
  await startRelay()
  await produce(phase, 15)
  // 3. A burst, then SIGKILL the first relay while it works through it, and replace it.
  await killMidBatch(first, produce(phase, 0))
  await startRelay()
  // 4. Break NATS while enqueues go on, then make it whole again.
  const outage = produce(phase, 10)
  await sleep(300)
  await injectFault('broker', () => broker.fault(jsm, stream))
  await outage
  // 5. Another burst and another SIGKILL, then the rest in one burst.
  await killMidBatch(second, produce(phase, 0))
  await startRelay()
  await produce(plan.transactions, 0)
  const producedAt = Date.now()
  // 6. Crash the store's server mid-drain, with no enqueue in flight (a commit cut off by
  //    the crash would leave the producer unsure whether it happened).
  if (pair.restartServer) {
    const restart = pair.restartServer
    await injectFault('store', async () => {
      await restart()
      return `${pair.server}: SIGKILLed mid-drain, restarted`
    })
  }
  const lastFaultAt = Date.now()

  const expectedProcessed = handleable()
  let outboxCounts: OutboxCounts | undefined
  let inboxCounts: InboxCounts | undefined
  const drained = await waitUntil(
    async () => {
      outboxCounts = (await attempt(() => pair.outbox.getCountByStatus())) ?? outboxCounts
      inboxCounts = (await attempt(() => pair.inbox.getCountByStatus())) ?? inboxCounts
      return (
        outboxCounts?.pending === 0 &&
        outboxCounts.publishing === 0 &&
        outboxCounts.failed === outboxPoison.size &&
        inboxCounts?.processed === expectedProcessed &&
        inboxCounts.failed === inboxPoison.size &&
        inboxCounts.processing === 0
      )
    },
    150_000,
    250,
  )
  const drainedAt = Date.now()
  await Promise.all(resumptions)

  // Stop every live relay with SIGTERM: each drains and exits 0.
  const live = relays.filter((relay) => relay.child.exitCode === null && relay.child.signalCode === null)
  for (const relay of live) relay.kill('SIGTERM')
  const exitCodes = await Promise.all(live.map((relay) => relay.exit))
  await processor.stop()
  const processorCounters = processor.counters()
  const streamInfo = await jsm.streams.info(stream)

  const ledger = await pair.ledger()
  const failedOutbox = (await pair.outbox.getFailedEvents(1_000)).map((event) => event.eventId)
  const failedInbox = (await pair.inbox.getFailedEvents(1_000)).map((event) => event.eventId)
  const rolledBackSeen: string[] = []
  for (const id of rolledBack) {
    if ((await pair.outbox.get(id)) !== null || (await pair.inbox.get(id)) !== null || ledger.has(id))
      rolledBackSeen.push(id)
  }
  const deadLetters = new Set([...failedOutbox, ...failedInbox])
  const lost = committed.filter((id) => !ledger.has(id) && !deadLetters.has(id))
  const figures: LedgerFigures = {
    store: pair.name,
    server: pair.server,
    broker: broker.kind,
    transactional: pair.transaction !== undefined,
    committed: committed.length,
    rolledBack: rolledBack.length,
    lost: lost.length,
    rolledBackPublished: rolledBackSeen.length,
    streamDuplicates: streamInfo.state.messages - (committed.length - outboxPoison.size),
    duplicateEffects: [...ledger.values()].reduce((sum, rows) => sum + Math.max(0, rows - 1), 0),
    stuck: (outboxCounts?.pending ?? 0) + (outboxCounts?.publishing ?? 0) + (inboxCounts?.processing ?? 0),
    idempotentReplays,
    relaysStarted: relays.length,
    relaysKilled: heldAtKill.length,
    eventsHeldByKilledRelays: heldAtKill,
    outboxPoison: outboxPoison.size,
    inboxPoison: inboxPoison.size,
    transientFailures: failedOnce.size,
    handlerReruns: [...handlerRuns.values()].reduce((sum, runs) => sum + runs - 1, 0),
    inboxDuplicatesAcked: processorCounters.duplicates,
    faults,
    secondsToProduce: (producedAt - started) / 1_000,
    drainSeconds: (drainedAt - Math.max(producedAt, lastFaultAt)) / 1_000,
    totalSeconds: (Date.now() - started) / 1_000,
  }
  console.log(`[ledger] ${JSON.stringify(figures)}`)
  writeReport(figures)
  const unfinished = drained && lost.length === 0 ? '' : await unfinishedTrouble(pair, lost, jsm, stream)

  try {
    expect(
      drained,
      `not drained: outbox ${JSON.stringify(outboxCounts)} inbox ${JSON.stringify(inboxCounts)}${unfinished}${relayTrouble(relays)}`,
    ).toBe(true)
    // Nothing lost, nothing stuck, no effect twice.
    expect(lost, unfinished).toEqual([])
    expect(figures.stuck).toBe(0)
    const twice = [...ledger].filter(([, rows]) => rows !== 1)
    expect(twice).toEqual([])
    const expectedInLedger = committed.filter((id) => !outboxPoison.has(id) && !inboxPoison.has(id))
    expect([...ledger.keys()].sort()).toEqual([...expectedInLedger].sort())
    // Without a store crash the handler itself ran once per event (a crash may roll back a
    // completed handler's transaction, which then runs again: the ledger above still holds one).
    if (!pair.restartServer) expect(figures.handlerReruns).toBe(0)
    // No rolled-back event anywhere: not in the outbox, not delivered, not in the ledger.
    expect(rolledBackSeen).toEqual([])
    // Dead letters only for the events designed as poison.
    expect(failedOutbox.sort()).toEqual([...outboxPoison].sort())
    expect(failedInbox.sort()).toEqual([...inboxPoison].sort())
    // The transient failures were retried to success; traceparent reached every handler.
    expect(failedOnce.size).toBeGreaterThan(0)
    expect(missingTraceparent).toBe(0)
    // Both kills hit a relay holding a claimed batch that it never marked; the store crash
    // hit while events were still to do (mid-drain); after each fault, events flowed again.
    expect(heldAtKill.every((held) => held > 0)).toBe(true)
    for (const fault of faults) {
      if (fault.target === 'store') expect(fault.backlog, fault.fault).toBeGreaterThan(0)
      expect(
        fault.resumedAfterSeconds,
        `${fault.fault}: inbox processed count after it ${JSON.stringify(resumeTraces.get(fault))}, fault ${JSON.stringify(fault)}`,
      ).not.toBeNull()
    }
    // Graceful stop: every live relay drained and exited 0.
    expect(exitCodes.every((code) => code === 0)).toBe(true)
  } finally {
    for (const relay of relays)
      if (relay.child.exitCode === null && relay.child.signalCode === null) relay.kill('SIGKILL')
    await jsm.streams.delete(stream).catch(() => false)
    await nc.close()
  }
  return figures
}

/**
 * What the store holds for the events that did not end in the ledger (payload left out),
 * and what the durable consumer still has outstanding, for a failure message: a row left
 * `processing` is only explained by the row itself (its lease, deliveries, claim) and by
 * whether JetStream still means to redeliver its message.
 */
const unfinishedTrouble = async <Tx>(
  pair: LedgerPair<Tx>,
  lost: readonly string[],
  jsm: JetStreamManager,
  stream: string,
): Promise<string> => {
  const rows: string[] = []
  for (const eventId of lost.slice(0, 20)) {
    const row = await attempt(() => pair.inbox.get(eventId))
    const { payload: _payload, ...shown } = row ?? { payload: '' }
    rows.push(
      `${eventId}: ${row === undefined ? 'unreadable' : row === null ? 'not in the inbox' : JSON.stringify(shown)}`,
    )
  }
  const consumer = await attempt(() => jsm.consumers.info(stream, 'ledger'))
  const outstanding = consumer
    ? `consumer: ack pending ${consumer.num_ack_pending}, redelivered ${consumer.num_redelivered}, pending ${consumer.num_pending}, waiting ${consumer.num_waiting}`
    : 'consumer: unreadable'
  return `\nunfinished events (${lost.length}):\n${rows.join('\n')}\n${outstanding}`
}

/**
 * The relays' own warnings and errors, for a failure message: the relays run as child
 * processes, so without these a CI failure says what ended wrong but not why. Designed
 * poison is left out; at most 40 lines.
 */
const relayTrouble = (relays: readonly RelayProcess[]): string => {
  const lines = relays.flatMap((relay) =>
    relay.lines
      .filter((line) => /"level":"(warn|error)"/.test(line) && !line.includes('poison'))
      .map((line) => `${relay.name}: ${line}`),
  )
  return lines.length === 0
    ? ''
    : `\nrelay warnings and errors (${lines.length}):\n${lines.slice(0, 40).join('\n')}`
}
