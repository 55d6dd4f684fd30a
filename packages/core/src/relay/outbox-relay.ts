import { type Clock, cutoffDays, cutoffMinutes, systemClock } from '../clock.js'
import { LeaseLostError, ValidationError } from '../errors.js'
import { type LoggerOption, resolveLogger, type TxboxLogger } from '../logger.js'
import { DEFAULT_MAX_EVENT_BYTES, resolveMaxEventBytes } from '../nats-message.js'
import type { KeyedDeadLetters, OutboxEvent, OutboxRepository } from '../outbox.js'
import { RelayTelemetry } from '../telemetry/relay-telemetry.js'
import { MAX_LIMIT, Validator } from '../validation.js'
import { type BackoffOptions, backoffDelayMs, type ResolvedBackoff, resolveBackoff } from './backoff.js'
import { ClaimBudget, DEFAULT_MAX_BATCH_BYTES, eventBytes } from './claim-budget.js'
import { LatencyHistogram } from './histogram.js'
import { type HealthReport, type RelayCounters, type RelayMetrics, zeroCounters } from './metrics.js'
import { failureReason, isPermanentFailure, PublishFailures } from './publish-failures.js'
import { PublishWindow } from './publish-window.js'
import { errorFields, messageOf, realSleep, type Sleep } from './sleep.js'
import { type MappedSubject, SubjectMap, type SubjectMapEntry, type SubjectMapOption } from './subject-map.js'
import type { OutboxPublisher, PublishReceipt, RelayWakeup } from './types.js'

const COMPONENT = 'relay'

/** Most batches a relay holds at once: each is up to batchSize events under a lease. */
const MAX_BATCHES_IN_FLIGHT = 64

/** The poll after a partial claim, without a wake-up hint (`minPollIntervalMs`). */
const DEFAULT_MIN_POLL_INTERVAL_MS = 20

/** Enough doublings to reach any timer (2^31 ms) from 1 ms; keeps 2 ** n finite. */
const MAX_POLL_DOUBLINGS = 31

/**
 * Events of one key a claim may hand this relay by default: 1, runs are opt-in. Measured on
 * SQLite (100 keys x 200 events, docs/BENCHMARKS.md "Key runs"), runs of 4 to 32 were no
 * faster than one event per key, and slower from 8 on (each key's run publishes one event at
 * a time, so a claim of few long runs publishes few events at once).
 */
const DEFAULT_KEY_RUN = 1

/** Longest `errorMessage` the relay stores; a transport error can carry a whole stack. */
const MAX_ERROR_MESSAGE = 2_000

/** Periodic upkeep of the outbox. `null` turns a task off. */
export interface RetentionOptions {
  /** `cleanup(days)`: delete `sent` events older than this (default 7). */
  sentOlderThanDays?: number | null | undefined
  /**
   * `resetStale(minutes)`: put back `publishing` events claimed longer ago than this
   * (default 10). Expired leases are reclaimed by `claim` itself; this catches events moved
   * to `publishing` by the reference `markAsPublishing` flow, which have no lease.
   */
  staleMinutes?: number | null | undefined
  /** How often both run (default 60,000 ms). */
  everyMs?: number | undefined
}

/** Options of {@link OutboxRelay}. Only `outbox` and `publisher` are required. */
export interface OutboxRelayOptions {
  /** Any outbox repository: the relay only calls its methods, never a transaction of its own. */
  outbox: OutboxRepository<never>
  /** Where events go (the NATS JetStream publisher from `@txbox/core/nats`). */
  publisher: OutboxPublisher
  /** Who holds the claims; unique per relay process (default `relay-<random>`). */
  workerId?: string | undefined
  /** Events per claim, 1..10,000 (default 100). A full batch makes the loop claim again at once. */
  batchSize?: number | undefined
  /** How long a claim is held before another relay may take the event, 1..2,147,483,647 ms (default 30,000 ms). */
  leaseMs?: number | undefined
  /** How often the leases of an in-flight batch are renewed, 1..2,147,483,647 ms (default leaseMs / 3). */
  renewEveryMs?: number | undefined
  /**
   * Publishes in flight at once, across every batch the relay holds, 1..10,000 (default 32).
   * A slot is taken in claim order, so the batch claimed first publishes first.
   */
  concurrency?: number | undefined
  /**
   * Batches claimed and not yet finished (published, then marked sent or scheduled for a
   * retry) at once, 1..64 (default 2). With 2, the relay claims the next batch while the
   * current one publishes, and marks a finished batch in the background, so neither the claim
   * nor the mark round trip stalls the publishes. 1 runs claim, publish and mark in lockstep.
   * Each batch is held under its own renewed lease, so a higher value holds more events claimed.
   */
  batchesInFlight?: number | undefined
  /**
   * What a dead-lettered event with an ordering key does to the later events of its key
   * (passed to every claim): `block` (default) holds them until it is redriven and sent,
   * `skip` lets them go on without it (docs/CONTRACT.md, "Ordering keys").
   */
  keyedDeadLetters?: KeyedDeadLetters | undefined
  /**
   * On a store that declares `keyRuns` (its `outbox.keyRuns`): the most consecutive events of
   * one ordering key a claim hands this relay, 1..10,000 (default 1: runs are opt-in; never
   * above the claim's limit). The relay publishes a key's run in `keySeq` order, each after the previous PubAck,
   * different keys concurrently; after a failed publish it releases the rest of the run. 1
   * claims one event per key per claim. Above 1 on another store is refused here.
   */
  keyRun?: number | undefined
  /**
   * Bytes (payload + headers, UTF-8) of events one claim may hold (default 128 MiB). A claim
   * asks for min(batchSize, max(1, floor(maxBatchBytes / maxEventBytes))) events.
   */
  maxBatchBytes?: number | undefined
  /**
   * The largest event the relay publishes, in bytes of payload + headers (default: the
   * publisher's `maxMessageBytes()`, i.e. the NATS server's `max_payload`, else 1 MiB).
   * Keep it equal to the store's `maxEventBytes`. A larger event (stored before the store
   * had a limit) is dead-lettered at once, never retried.
   */
  maxEventBytes?: number | undefined
  /**
   * Start with a claim of 1 event and double it after each full batch (default true), so a
   * relay restarted after running out of memory on huge legacy rows still makes progress.
   */
  claimRampUp?: boolean | undefined
  /** At most one log line per this long about publishes that failed and will be retried (default 10,000 ms). */
  failureLogEveryMs?: number | undefined
  /** Publish attempts before an event is dead-lettered (default 10; compared with `retryCount + 1`). */
  maxAttempts?: number | undefined
  /** Delay between attempts, persisted as `availableAt`. */
  backoff?: BackoffOptions | undefined
  /**
   * Longest wait between claims when the last batch was not full, 0..2,147,483,647 ms
   * (default 1,000 ms), or a wake-up hint, whichever first. With a wake-up hint the relay
   * always waits this long for it; without one it polls sooner while events keep coming
   * (see `minPollIntervalMs`).
   */
  pollIntervalMs?: number | undefined
  /**
   * Without a wake-up hint: the wait after a claim that found events but not a full batch,
   * 0..pollIntervalMs (default 20 ms, or pollIntervalMs when that is smaller). Each empty
   * claim after it doubles the wait, up to `pollIntervalMs`: events trickling in are
   * published within about this long, and an idle outbox is still claimed only about once
   * per `pollIntervalMs`.
   */
  minPollIntervalMs?: number | undefined
  /** Periodic `resetStale` and `cleanup`. */
  retention?: RetentionOptions | undefined
  /**
   * Publishes each event to another subject than the stored one: a table (exact subjects
   * and NATS patterns with `*` and `>`, the first match wins; checked here, a bad entry
   * throws a `ValidationError` naming it) or a function. The stored event is unchanged; the
   * mapped subject is what NATS gets and what logs show. A function's answer is checked on
   * each call: a throw or a subject NATS cannot publish to dead-letters the event (`subject-map`).
   */
  subjectMap?: SubjectMapOption | undefined
  /**
   * A wake-up hint (e.g. PostgreSQL LISTEN/NOTIFY) that ends the poll wait early. The relay
   * owns it: `stop()` calls its `close()` (the PostgreSQL wakeup then gives its LISTEN
   * connection back to the pool, so `pool.end()` can finish). Set `ownsWakeup: false` to
   * close it yourself, e.g. when several relays share one.
   */
  wakeup?: RelayWakeup | undefined
  /** Whether `stop()` closes `wakeup` (default true). */
  ownsWakeup?: boolean | undefined
  /** The relay's own time source: maintenance schedule, claim latency, loop liveness, pending age. */
  clock?: Clock | undefined
  /** How the relay waits (poll interval, renewal interval); injected by tests. */
  sleep?: Sleep | undefined
  /** The jitter's random source, [0, 1). */
  random?: (() => number) | undefined
  /**
   * Where the relay logs (dead letters, store errors, lost leases). Default: warnings and
   * errors on stderr, one JSON object per line. Takes a `TxboxLogger` (`console` fits) or a
   * pino/bunyan logger as is; `silentLogger` logs nothing.
   */
  logger?: LoggerOption | undefined
  /** `health()` reports the loop dead when it made no progress for this long (default max(30,000, 3 x pollIntervalMs)). */
  healthStaleMs?: number | undefined
}

type State = RelayMetrics['state']

/** How a table entry is named in `publishedByMapEntry` (and the Prometheus `entry` label). */
const mapEntryLabel = (entry: SubjectMapEntry): string => `${entry.from} -> ${entry.to}`

/**
 * A retention age (`sentOlderThanDays`, `staleMinutes`): a finite number >= 0, as the
 * store's `cleanup` and `resetStale` take it, small enough that `now - age` is a Date
 * (otherwise every maintenance run would fail in the store).
 */
const retentionAge = (
  validate: Validator,
  value: number,
  name: string,
  cutoff: (now: Date, age: number) => Date,
  now: Date,
): number => {
  validate.nonNegative(value, name)
  if (Number.isNaN(cutoff(now, value).getTime()))
    throw new ValidationError(
      COMPONENT,
      `${name} must be small enough that now minus it is a valid date; got ${String(value)}`,
    )
  return value
}

/**
 * Moves events from the outbox to the transport: claim a batch, publish it with bounded
 * concurrency, mark the successes sent in one call, retry failures with persisted backoff,
 * dead-letter after `maxAttempts`.
 *
 * Why it is safe to run many of them, and to kill any of them:
 * - It never holds a database transaction across a publish: it only calls repository
 *   methods, each of which commits before returning (`claim` MUST NOT leave a transaction open).
 * - Every write after the claim is fenced by `workerId`: if the lease expired and another
 *   relay took the event, the write is refused (LeaseLostError, or the id comes back from
 *   `markManyAsSent`) and counted, never applied.
 * - Leases are renewed while a batch is in flight; an event whose renewal failed is dropped
 *   from the batch and not marked, whatever its publish did.
 * - A relay killed after publishing but before marking leaves the event `publishing` with a
 *   lease that expires; the next claim publishes it again with the same `Nats-Msg-Id`, which
 *   JetStream deduplicates, and the inbox deduplicates beyond the JetStream window.
 */
export class OutboxRelay {
  readonly workerId: string
  readonly #outbox: OutboxRepository<never>
  readonly #publisher: OutboxPublisher
  readonly #batchSize: number
  readonly #leaseMs: number
  readonly #renewEveryMs: number
  readonly #window: PublishWindow
  readonly #batchesInFlight: number
  readonly #keyedDeadLetters: KeyedDeadLetters
  /** Events of one key per claim: 1 unless the store declares `keyRuns`. */
  readonly #keyRun: number
  readonly #maxAttempts: number
  readonly #backoff: ResolvedBackoff
  readonly #pollIntervalMs: number
  readonly #minPollIntervalMs: number
  /** Empty claims in a row since the last claim that found events (the poll backs off with it). */
  #emptyClaims = 0
  readonly #sentOlderThanDays: number | null
  readonly #staleMinutes: number | null
  readonly #maintenanceEveryMs: number
  readonly #wakeup: RelayWakeup | undefined
  readonly #ownsWakeup: boolean
  readonly #clock: Clock
  readonly #sleep: Sleep
  readonly #random: () => number
  readonly #logger: TxboxLogger
  readonly #healthStaleMs: number
  readonly #subjectMap: SubjectMap
  readonly #publishedByMapEntry: Record<string, number> = {}

  #state: State = 'idle'
  readonly #stopController = new AbortController()
  #loop: Promise<void> | undefined
  #released: Promise<void> | undefined
  #counters: RelayCounters = zeroCounters()
  #inFlight = 0
  /** The batches claimed and not yet finished; each promise settles (never rejects) when its batch is done. */
  readonly #batches = new Set<Promise<void>>()
  /** The batches in flight that hold keyed events: their marks make the next events of those keys claimable. */
  readonly #keyedBatches = new Set<Promise<void>>()
  #lastTickAt: number | null = null
  #nextMaintenanceAt: number | null = null
  #claimLatency = { last: 0, total: 0, max: 0 }
  readonly #budget: ClaimBudget
  readonly #maxEventBytes: number
  readonly #failures: PublishFailures
  readonly #claimDuration = new LatencyHistogram()
  readonly #publishDuration = new LatencyHistogram()
  readonly #deadLettered: Record<string, number> = {}
  #lastClaimLimit = 0
  #lastBatchBytes = 0
  /** OpenTelemetry spans and metrics, when `@opentelemetry/api` is installed. */
  readonly #telemetry: RelayTelemetry = new RelayTelemetry(this)

  constructor(options: OutboxRelayOptions) {
    if (typeof options !== 'object' || options === null)
      throw new ValidationError(COMPONENT, 'options must be an object')
    if (typeof options.outbox?.claim !== 'function')
      throw new ValidationError(COMPONENT, 'options.outbox must be an OutboxRepository')
    if (typeof options.publisher?.publish !== 'function')
      throw new ValidationError(COMPONENT, 'options.publisher must have publish(event)')
    this.#outbox = options.outbox
    this.#publisher = options.publisher
    // Every numeric option is checked here with the limits the store applies to the calls it
    // feeds (claim's limit and leaseMs, retryLater's delayMs, cleanup's days...) or the
    // timer it feeds: a value the relay accepted would otherwise fail on every claim, forever.
    const validate = new Validator(COMPONENT)
    this.workerId = validate.workerId(
      options.workerId ?? `relay-${globalThis.crypto.randomUUID().slice(0, 8)}`,
    )
    this.#batchSize = validate.limit(options.batchSize, 'batchSize')
    this.#leaseMs = validate.leaseMs(options.leaseMs ?? 30_000)
    this.#renewEveryMs = validate.timerMs(
      options.renewEveryMs ?? Math.max(1, Math.floor(this.#leaseMs / 3)),
      'renewEveryMs',
      1,
    )
    this.#window = new PublishWindow(
      validate.positiveInteger(options.concurrency ?? 32, 'concurrency', MAX_LIMIT),
    )
    this.#batchesInFlight = validate.positiveInteger(
      options.batchesInFlight ?? 2,
      'batchesInFlight',
      MAX_BATCHES_IN_FLIGHT,
    )
    this.#keyedDeadLetters = validate.keyedDeadLetters(options.keyedDeadLetters)
    this.#keyRun = resolveKeyRun(validate, options.keyRun, this.#outbox)
    this.#maxAttempts = validate.positiveInteger(options.maxAttempts ?? 10, 'maxAttempts')
    this.#backoff = resolveBackoff(COMPONENT, options.backoff)
    this.#pollIntervalMs = validate.timerMs(options.pollIntervalMs ?? 1_000, 'pollIntervalMs')
    this.#minPollIntervalMs = validate.timerMs(
      options.minPollIntervalMs ?? Math.min(DEFAULT_MIN_POLL_INTERVAL_MS, this.#pollIntervalMs),
      'minPollIntervalMs',
    )
    if (this.#minPollIntervalMs > this.#pollIntervalMs)
      throw new ValidationError(
        COMPONENT,
        `minPollIntervalMs ${this.#minPollIntervalMs} is larger than pollIntervalMs ${this.#pollIntervalMs}; ` +
          'lower it or raise pollIntervalMs',
      )
    this.#clock = options.clock ?? systemClock
    const retention = options.retention ?? {}
    const now = this.#clock()
    this.#sentOlderThanDays =
      retention.sentOlderThanDays === null
        ? null
        : retentionAge(
            validate,
            retention.sentOlderThanDays ?? 7,
            'retention.sentOlderThanDays',
            cutoffDays,
            now,
          )
    this.#staleMinutes =
      retention.staleMinutes === null
        ? null
        : retentionAge(validate, retention.staleMinutes ?? 10, 'retention.staleMinutes', cutoffMinutes, now)
    this.#maintenanceEveryMs = validate.nonNegative(retention.everyMs ?? 60_000, 'retention.everyMs')
    this.#wakeup = options.wakeup
    if (options.ownsWakeup !== undefined && typeof options.ownsWakeup !== 'boolean')
      throw new ValidationError(COMPONENT, `ownsWakeup must be a boolean; got ${String(options.ownsWakeup)}`)
    this.#ownsWakeup = options.ownsWakeup ?? true
    this.#sleep = options.sleep ?? realSleep
    this.#random = options.random ?? Math.random
    this.#logger = resolveLogger(COMPONENT, options.logger, { workerId: this.workerId })
    this.#healthStaleMs = validate.nonNegative(
      options.healthStaleMs ?? Math.max(30_000, 3 * this.#pollIntervalMs),
      'healthStaleMs',
    )
    // The stores' own check of their maxEventBytes option: the two are meant to be equal.
    this.#maxEventBytes = resolveMaxEventBytes(
      COMPONENT,
      options.maxEventBytes ?? this.#publisher.maxMessageBytes?.() ?? DEFAULT_MAX_EVENT_BYTES,
    )
    const maxBatchBytes = validate.positiveInteger(
      options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES,
      'maxBatchBytes',
    )
    if (options.claimRampUp !== undefined && typeof options.claimRampUp !== 'boolean')
      throw new ValidationError(
        COMPONENT,
        `claimRampUp must be a boolean; got ${String(options.claimRampUp)}`,
      )
    this.#budget = new ClaimBudget({
      batchSize: this.#batchSize,
      maxBatchBytes,
      maxEventBytes: this.#maxEventBytes,
      rampUp: options.claimRampUp ?? true,
    })
    this.#subjectMap = new SubjectMap(options.subjectMap, COMPONENT)
    for (const entry of this.#subjectMap.entries) this.#publishedByMapEntry[mapEntryLabel(entry)] = 0
    this.#failures = new PublishFailures(
      this.#clock,
      this.#logger,
      validate.nonNegative(options.failureLogEveryMs ?? 10_000, 'failureLogEveryMs'),
    )
  }

  /** Starts the loop in the background. Call {@link stop} to end it. */
  start(): void {
    if (this.#state !== 'idle') throw new ValidationError(COMPONENT, `the relay is already ${this.#state}`)
    this.#state = 'running'
    this.#tick()
    // Spans are recorded from here on; only the metric instruments' registration is async.
    void this.#telemetry.open()
    this.#loop = this.#run()
  }

  /**
   * Stops claiming, lets the batches in flight finish (publishes awaited, successes marked,
   * failures scheduled), closes the wakeup it owns, then resolves. Idempotent. What you
   * passed in besides the wakeup (the store, its pool, the NATS connection) stays open:
   * close it after `stop()` resolves.
   */
  async stop(): Promise<void> {
    if (this.#state === 'idle') this.#state = 'stopped'
    if (this.#state === 'running') {
      this.#state = 'stopping'
      this.#stopController.abort()
    }
    await this.#loop
    // Also after runOnce() without start(): a stopped relay's instruments are read no more.
    this.#telemetry.close()
    this.#released ??= this.#releaseWakeup()
    await this.#released
  }

  async #releaseWakeup(): Promise<void> {
    if (!this.#ownsWakeup || typeof this.#wakeup?.close !== 'function') return
    try {
      await this.#wakeup.close()
    } catch (error) {
      // The loop has ended either way; a wakeup that cannot say UNLISTEN must not turn a
      // clean shutdown into a crash.
      this.#logger.warn('closing the wakeup failed', { error: messageOf(error) })
    }
  }

  /** Resolves when the loop has ended (after {@link stop}, or never while running). */
  get done(): Promise<void> {
    return this.#loop ?? Promise.resolve()
  }

  /** The relay's state. */
  get state(): State {
    return this.#state
  }

  /** The counters so far (a copy). */
  counters(): RelayCounters {
    return { ...this.#counters }
  }

  /**
   * One turn of the loop without waiting: claim a batch and publish it. Returns how many
   * events were claimed (0: nothing due). For tests and for a one-shot drain: call it until
   * it returns 0 (with `claimRampUp`, the first claims ask for 1, 2, 4, ... events).
   */
  async runOnce(): Promise<number> {
    void this.#telemetry.open()
    const batch = await this.#claim()
    if (batch === undefined) return 0
    if (batch.events.length > 0) await this.#publishBatch(batch.events, batch.sizes)
    return batch.events.length
  }

  /** Runs `resetStale` and `cleanup` now (each failure is logged and counted, not thrown). */
  async runMaintenance(): Promise<void> {
    this.#nextMaintenanceAt = this.#clock().getTime() + this.#maintenanceEveryMs
    if (this.#staleMinutes !== null) {
      try {
        const reset = await this.#outbox.resetStale(this.#staleMinutes)
        this.#counters.staleReset += reset
        if (reset > 0) this.#logger.warn('reset stale publishing events', { count: reset })
      } catch (error) {
        this.#storeError('outbox.resetStale', error)
      }
    }
    if (this.#sentOlderThanDays !== null) {
      try {
        this.#counters.cleanedUp += await this.#outbox.cleanup(this.#sentOlderThanDays)
      } catch (error) {
        this.#storeError('outbox.cleanup', error)
      }
    }
  }

  /**
   * Counters, gauges, latency histograms, the store's count per status and the age of the
   * oldest due event (two store reads: `findPending({ limit: 1 })`, `getCountByStatus()`). Every field has a value at every call: a
   * drained outbox reports an age of 0, a store that cannot be read reports null.
   */
  async metrics(): Promise<RelayMetrics> {
    const [oldestPendingAgeMs, outboxEvents] = await Promise.all([
      this.#outbox.findPending({ limit: 1 }).then(
        ([oldest]) => (oldest ? Math.max(0, this.#clock().getTime() - oldest.enqueuedAt.getTime()) : 0),
        (error: unknown) => {
          this.#storeError('outbox.findPending', error)
          return null
        },
      ),
      this.#outbox.getCountByStatus().catch((error: unknown) => {
        this.#storeError('outbox.getCountByStatus', error)
        return null
      }),
    ])
    const { last, total, max } = this.#claimLatency
    return {
      ...this.#counters,
      workerId: this.workerId,
      state: this.#state,
      inFlight: this.#inFlight,
      claimLatencyMs: { last, mean: this.#counters.claims === 0 ? 0 : total / this.#counters.claims, max },
      claimDuration: this.#claimDuration.snapshot(),
      publishDuration: this.#publishDuration.snapshot(),
      publishFailures: { ...this.#failures.byReason },
      deadLettered: { ...this.#deadLettered },
      publishedByMapEntry: { ...this.#publishedByMapEntry },
      claimLimit: this.#budget.limit,
      lastBatchBytes: this.#lastBatchBytes,
      oldestPendingAgeMs,
      outboxEvents: outboxEvents === null ? null : { ...outboxEvents },
      lastTickAt: this.#lastTickAt,
    }
  }

  /** Store reachable, transport connected, loop alive (made progress within `healthStaleMs`). */
  async health(): Promise<HealthReport> {
    let store: HealthReport['store']
    try {
      await this.#outbox.getCountByStatus()
      store = { ok: true }
    } catch (error) {
      store = { ok: false, detail: messageOf(error) }
    }
    const reported = this.#publisher.health?.()
    // A hung broker keeps the connection "connected": publishes that time out are the only sign.
    const publishes = this.#failures.health()
    const publisher: HealthReport['publisher'] =
      reported && !reported.ok
        ? { ok: false, detail: reported.detail }
        : !publishes.ok
          ? { ok: false, detail: publishes.detail }
          : reported
            ? { ok: true, detail: reported.detail }
            : { ok: true, detail: 'the publisher does not report health' }
    const lastTickAgoMs = this.#lastTickAt === null ? null : this.#clock().getTime() - this.#lastTickAt
    let loop: HealthReport['loop']
    if (this.#state !== 'running') loop = { ok: false, lastTickAgoMs, detail: `the relay is ${this.#state}` }
    else if (lastTickAgoMs !== null && lastTickAgoMs > this.#healthStaleMs)
      loop = { ok: false, lastTickAgoMs, detail: `no progress for ${lastTickAgoMs} ms` }
    else loop = { ok: true, lastTickAgoMs }
    return { ok: store.ok && publisher.ok && loop.ok, store, publisher, loop }
  }

  async #run(): Promise<void> {
    try {
      if (this.#wakeup?.listen) {
        try {
          await this.#wakeup.listen()
        } catch (error) {
          this.#logger.warn('wakeup listen failed; polling only until it recovers', {
            error: messageOf(error),
          })
        }
      }
      while (this.#state === 'running') {
        this.#tick()
        if (this.#nextMaintenanceAt === null || this.#clock().getTime() >= this.#nextMaintenanceAt) {
          await this.runMaintenance()
        }
        // A full pipeline: wait until its oldest batches are done before claiming more.
        while (this.#batches.size >= this.#batchesInFlight) await Promise.race(this.#batches)
        if (this.#state !== 'running') break
        const batch = await this.#claim()
        if (batch !== undefined && batch.events.length > 0) this.#startBatch(batch.events, batch.sizes)
        if (this.#state !== 'running') break
        // A full batch means more is probably due: claim again at once, while this one
        // publishes. Otherwise wait for the poll interval or a wake-up hint (the batches in
        // flight go on meanwhile). After a store error, never trust the hint (it may fire at
        // once while the database is down) and just wait.
        if (batch === undefined) await this.#idle(false, this.#pollIntervalMs)
        else if (batch.events.length < this.#lastClaimLimit)
          await this.#idle(true, this.#nextPollMs(batch.events.length), this.#keyedBatchDone())
      }
    } catch (error) {
      // Every expected failure is handled inside the turn; this is a bug or a broken store
      // object, and a dead loop must show in health(), not crash the process silently.
      this.#logger.error('relay loop crashed', { error: messageOf(error) })
    } finally {
      // stop() promises that what was claimed is published and marked before it resolves.
      await Promise.all(this.#batches)
      this.#telemetry.close()
      this.#state = 'stopped'
    }
  }

  #tick(): void {
    this.#lastTickAt = this.#clock().getTime()
  }

  #storeError(operation: string, error: unknown): void {
    this.#counters.storeErrors++
    this.#logger.error(`${operation} failed`, { workerId: this.workerId, ...errorFields(error) })
  }

  /**
   * How long to wait after a claim that was not full. With a wake-up hint, the poll is only
   * a fallback. Without one, poll again soon while events keep coming, backing off by
   * doubling with each empty claim.
   */
  #nextPollMs(claimed: number): number {
    if (this.#wakeup !== undefined) return this.#pollIntervalMs
    this.#emptyClaims = claimed > 0 ? 0 : Math.min(this.#emptyClaims + 1, MAX_POLL_DOUBLINGS)
    return Math.min(this.#pollIntervalMs, this.#minPollIntervalMs * 2 ** this.#emptyClaims)
  }

  /**
   * After a claim that was not full, while a batch holding keyed events is in flight: the
   * first such batch to finish. Its marks make the next events of its keys claimable, and
   * nothing else was claimable a moment ago (the claim was not full), so that is when to claim
   * again: neither after the poll interval (the keyed drain waited 20 ms and more per round
   * while a batch takes a few) nor at the wake-up hint (PostgreSQL's check answers at once
   * while the waiting events of those keys are due: a claim per turn finding nothing).
   * Undefined when no keyed batch is in flight.
   */
  #keyedBatchDone(): Promise<void> | undefined {
    return this.#keyedBatches.size === 0 ? undefined : Promise.race(this.#keyedBatches)
  }

  async #idle(useWakeup: boolean, waitMs: number, keyedBatchDone?: Promise<void>): Promise<void> {
    const controller = new AbortController()
    const stop = this.#stopController.signal
    const abort = () => controller.abort()
    stop.addEventListener('abort', abort, { once: true })
    try {
      const timeout = this.#sleep(waitMs, controller.signal)
      const waits: Promise<unknown>[] = [timeout]
      if (keyedBatchDone !== undefined) waits.push(keyedBatchDone)
      else if (useWakeup && this.#wakeup) {
        // A failing hint must not turn into a hot loop: fall back to the poll timeout. So does
        // a wait that answers `false` at once (a closed PostgreSQL wakeup): that is no hint.
        waits.push(
          this.#wakeup.wait(controller.signal).then(
            (hint) => (hint === false ? timeout : hint),
            (error: unknown) => {
              this.#logger.warn('wakeup failed; polling', { error: messageOf(error) })
              return timeout
            },
          ),
        )
      }
      await Promise.race(waits)
    } finally {
      stop.removeEventListener('abort', abort)
      controller.abort()
    }
  }

  /** Publishes a claimed batch in the background; the loop goes on claiming while it runs. */
  #startBatch(events: readonly OutboxEvent[], sizes: readonly number[]): void {
    const batch: Promise<void> = this.#publishBatch(events, sizes)
      .catch((error: unknown) => {
        // Every expected failure is handled inside; this is a bug or a broken store object.
        this.#logger.error('publishing a batch crashed', { error: messageOf(error) })
      })
      .finally(() => {
        this.#batches.delete(batch)
        this.#keyedBatches.delete(batch)
      })
    this.#batches.add(batch)
    if (events.some((event) => event.orderingKey !== undefined)) this.#keyedBatches.add(batch)
  }

  /** Claims one batch. Returns it (maybe empty), or undefined when the claim failed. */
  async #claim(): Promise<{ events: OutboxEvent[]; sizes: number[] } | undefined> {
    this.#failures.tick()
    const started = this.#clock().getTime()
    const limit = this.#budget.limit
    this.#lastClaimLimit = limit
    const claimStarted = performance.now()
    let events: OutboxEvent[]
    try {
      events = await this.#outbox.claim({
        limit,
        leaseMs: this.#leaseMs,
        workerId: this.workerId,
        keyedDeadLetters: this.#keyedDeadLetters,
        ...(this.#keyRun > 1 ? { keyRun: Math.min(this.#keyRun, limit) } : {}),
      })
    } catch (error) {
      this.#telemetry.claimed(performance.now() - claimStarted, undefined, error)
      this.#storeError('outbox.claim', error)
      return undefined
    }
    this.#telemetry.claimed(performance.now() - claimStarted, events.length)
    const latency = Math.max(0, this.#clock().getTime() - started)
    this.#claimLatency.last = latency
    this.#claimLatency.total += latency
    this.#claimLatency.max = Math.max(this.#claimLatency.max, latency)
    this.#claimDuration.observe(latency)
    this.#counters.claims++
    this.#counters.claimed += events.length
    const sizes = events.map(eventBytes)
    const bytes = sizes.reduce((sum, size) => sum + size, 0)
    this.#lastBatchBytes = bytes
    this.#budget.record(events.length, bytes)
    if (bytes > this.#budget.maxBatchBytes)
      this.#logger.warn(
        'claimed batch is larger than maxBatchBytes allows (events stored before the size limit); claiming fewer next',
        {
          events: events.length,
          bytes,
          nextClaimLimit: this.#budget.limit,
        },
      )
    this.#tick()
    return { events, sizes }
  }

  async #publishBatch(events: readonly OutboxEvent[], sizes: readonly number[]): Promise<void> {
    // The ids this relay still holds. An id leaves the set when its lease is lost or when a
    // failure was recorded; only ids still in it are marked sent.
    const held = new Set(events.map((event) => event.eventId))
    const published: string[] = []
    const batchDone = new AbortController()
    const renewal = this.#renewWhileInFlight(held, batchDone.signal)
    try {
      // Every publish of the batch queues for a slot of the relay-wide window now, so slots
      // go out in claim order: this batch's events before those of a batch claimed later. The
      // events of one key (a run) share one slot and go out one after the other.
      const publishes = runsOf(events, sizes).map((run) => {
        const publish = () => this.#publishRun(run, held, published)
        const slot = this.#window.acquire()
        return (slot === undefined ? publish() : slot.then(publish)).finally(() => this.#window.release())
      })
      const crashed = (await Promise.allSettled(publishes)).find((result) => result.status === 'rejected')
      if (crashed !== undefined) throw crashed.reason
    } finally {
      batchDone.abort()
      await renewal
      this.#telemetry.endAll(events.map((event) => event.eventId))
    }
    const toMark = published.filter((id) => held.has(id))
    if (toMark.length === 0) return
    const markStarted = performance.now()
    try {
      const notApplied = await this.#outbox.markManyAsSent(toMark, { workerId: this.workerId })
      this.#telemetry.marked(performance.now() - markStarted, toMark.length, notApplied.length)
      // Not applied = another relay owns the event now (our lease expired): it will publish
      // again under the same Nats-Msg-Id, which JetStream deduplicates.
      this.#counters.leaseLost += notApplied.length
      this.#counters.published += toMark.length - notApplied.length
      if (notApplied.length > 0)
        this.#logger.warn('leases lost before marking sent', {
          workerId: this.workerId,
          count: notApplied.length,
        })
    } catch (error) {
      // The events stay `publishing` until the lease expires, then are published again
      // (deduplicated downstream). Nothing is lost.
      this.#telemetry.marked(performance.now() - markStarted, toMark.length, undefined, error)
      this.#storeError('outbox.markManyAsSent', error)
    }
  }

  /**
   * Publishes the events of one key in order, each after the previous one's PubAck (an
   * unkeyed event is a run of one). When one is not published (failed, dead-lettered, lease
   * lost), the rest were never published: they are released before its failure is recorded,
   * so the key's next claim starts from it again.
   */
  async #publishRun(run: readonly RunEvent[], held: Set<string>, published: string[]): Promise<void> {
    for (let index = 0; index < run.length; index++) {
      const { stored, size } = run[index] as RunEvent
      const rest = run.slice(index + 1)
      let gaveBack = rest.length === 0
      const giveBack = async (): Promise<boolean> => {
        gaveBack = true
        return this.#release(rest, held)
      }
      if (await this.#publishOne(stored, size, held, published, giveBack)) continue
      if (!gaveBack) await this.#release(rest, held)
      return
    }
  }

  /**
   * Gives back the claims of events never published (`release`), so they are claimable again
   * at once in their key's order. False when the store failed: they stay `publishing` until
   * their lease expires.
   */
  async #release(events: readonly RunEvent[], held: Set<string>): Promise<boolean> {
    const ids = events.map(({ stored }) => stored.eventId).filter((id) => held.has(id))
    if (ids.length === 0) return true
    for (const id of ids) held.delete(id)
    try {
      const notApplied = (await this.#outbox.release?.(ids, { workerId: this.workerId })) ?? []
      this.#counters.leaseLost += notApplied.length
      return true
    } catch (error) {
      this.#storeError('outbox.release', error)
      return false
    }
  }

  /**
   * Publishes one event of a batch; every outcome is recorded, none is thrown. True when it
   * was published (to be marked sent). `giveBack` runs before a failure is recorded (the
   * rest of its key's run); when it answers false the event is left `publishing` under the
   * lease it holds, so its key resumes from it once the lease expires.
   */
  async #publishOne(
    stored: OutboxEvent,
    size: number,
    held: Set<string>,
    published: string[],
    giveBack: () => Promise<boolean>,
  ): Promise<boolean> {
    if (!held.has(stored.eventId)) return false
    this.#telemetry.publishing(stored)
    let mapped: MappedSubject
    try {
      mapped = this.#subjectMap.map(stored)
    } catch (error) {
      // A mapping function's bug or an impossible target: no retry would publish it.
      await this.#deadLetter(
        stored,
        'subject-map',
        `the subject map gave no subject NATS can publish to for ${JSON.stringify(stored.subject)}: ${messageOf(error)}. ` +
          'Fix the subject map, then requeueFailed',
        held,
        giveBack,
      )
      return false
    }
    // What NATS gets (and what logs name); the stored event keeps its subject.
    const event = mapped.subject === stored.subject ? stored : { ...stored, subject: mapped.subject }
    if (size > this.#maxEventBytes) {
      // Stored before the store had a limit: no retry can ever publish it.
      await this.#deadLetter(
        event,
        'too-large',
        `event is a ${size}-byte NATS message (payload + headers), over the relay's maxEventBytes of ${this.#maxEventBytes}: ` +
          'it can never be published, so it was dead-lettered without retry. Raise the NATS server max_payload ' +
          'and maxEventBytes, or replace the event with smaller ones, then requeueFailed',
        held,
        giveBack,
      )
      return false
    }
    this.#inFlight++
    const started = this.#clock().getTime()
    try {
      const receipt = await this.#telemetry.publish(event, () => this.#publisher.publish(event))
      this.#publishDuration.observe(this.#clock().getTime() - started)
      this.#failures.succeeded()
      if (mapped.entry !== undefined) {
        const label = mapEntryLabel(mapped.entry)
        this.#publishedByMapEntry[label] = (this.#publishedByMapEntry[label] ?? 0) + 1
      }
      this.#telemetry.acknowledged(event.eventId, receipt)
      if (receipt.duplicate && !(await this.#acceptDuplicate(event, receipt, held, giveBack))) return false
      this.#telemetry.end(event.eventId, receipt.duplicate ? 'duplicate' : 'published')
      published.push(event.eventId)
      return true
    } catch (error) {
      this.#publishDuration.observe(this.#clock().getTime() - started)
      this.#counters.failed++
      this.#telemetry.failed(event.eventId, error)
      if (held.has(event.eventId)) await this.#recordFailure(event, error, held, giveBack)
      else {
        this.#failures.failed(event, error, false)
        this.#telemetry.end(event.eventId, 'lease-lost')
      }
      return false
    } finally {
      this.#inFlight--
      this.#tick()
    }
  }

  async #renewWhileInFlight(held: Set<string>, done: AbortSignal): Promise<void> {
    while (!done.aborted) {
      await this.#sleep(this.#renewEveryMs, done)
      if (done.aborted || held.size === 0) continue
      const ids = [...held]
      try {
        const renewed = new Set(
          await this.#outbox.renewLease(ids, { workerId: this.workerId, leaseMs: this.#leaseMs }),
        )
        for (const id of ids) {
          if (renewed.has(id) || !held.has(id)) continue
          held.delete(id)
          this.#counters.leaseLost++
          this.#logger.warn('lease lost while publishing', { workerId: this.workerId, eventId: id })
        }
        this.#tick()
      } catch (error) {
        // Keep going: the lease is still valid until it expires, and the fenced marks will
        // refuse anything that was taken over meanwhile.
        this.#storeError('outbox.renewLease', error)
      }
    }
  }

  /**
   * A duplicate answer is proof of delivery only if the stored message is this event.
   * Returns whether to mark the event sent.
   */
  async #acceptDuplicate(
    event: OutboxEvent,
    receipt: PublishReceipt,
    held: Set<string>,
    giveBack: () => Promise<boolean>,
  ): Promise<boolean> {
    this.#counters.duplicates++
    const where = {
      eventId: event.eventId,
      subject: event.subject,
      stream: receipt.stream,
      storedSeq: receipt.seq,
    }
    if (receipt.duplicateCheck === 'same') {
      this.#logger.warn(
        'JetStream answered duplicate; the stored message is this event (delivered before)',
        where,
      )
      return true
    }
    if (receipt.duplicateCheck === 'conflict') {
      this.#counters.duplicateConflicts++
      const message =
        `NOT delivered: JetStream answered "duplicate" but stream ${String(receipt.stream)} holds a different ` +
        `message under Nats-Msg-Id ${JSON.stringify(event.eventId)} at seq ${String(receipt.seq)} ` +
        `(${receipt.duplicateDetail ?? 'contents differ'}). Another publisher uses this id within the ` +
        "stream's duplicate_window: find it, then requeueFailed this event after the window has passed"
      this.#logger.error(
        'duplicate conflict: another message holds this event id; the event was not delivered',
        {
          ...where,
          detail: receipt.duplicateDetail,
        },
      )
      await this.#deadLetter(event, 'duplicate-conflict', message, held, giveBack)
      return false
    }
    this.#counters.duplicatesUnverified++
    this.#logger.warn(
      'JetStream answered duplicate and the stored message could not be compared; counted as delivered',
      {
        ...where,
        detail: receipt.duplicateDetail ?? 'the publisher does not verify duplicates',
      },
    )
    return true
  }

  /** Dead-letters at once (fenced); the reason is counted in `deadLettered`. */
  async #deadLetter(
    event: OutboxEvent,
    reason: string,
    message: string,
    held: Set<string>,
    giveBack: () => Promise<boolean>,
  ): Promise<void> {
    held.delete(event.eventId)
    if (!(await giveBack())) return
    const errorMessage = message.slice(0, MAX_ERROR_MESSAGE)
    this.#telemetry.deadLettered(event.eventId, reason, errorMessage)
    try {
      await this.#outbox.markAsFailed(event.eventId, errorMessage, { workerId: this.workerId })
      this.#counters.dead++
      this.#deadLettered[reason] = (this.#deadLettered[reason] ?? 0) + 1
      this.#logger.error('event dead-lettered', {
        eventId: event.eventId,
        subject: event.subject,
        reason,
        attempts: event.retryCount + 1,
        error: errorMessage,
      })
    } catch (markError) {
      if (markError instanceof LeaseLostError) this.#counters.leaseLost++
      else this.#storeError('outbox.markAsFailed', markError)
    }
  }

  async #recordFailure(
    event: OutboxEvent,
    error: unknown,
    held: Set<string>,
    giveBack: () => Promise<boolean>,
  ): Promise<void> {
    const attempt = event.retryCount + 1
    const permanent = isPermanentFailure(error)
    const willRetry = !permanent && attempt < this.#maxAttempts
    this.#failures.failed(event, error, willRetry)
    if (!willRetry) {
      const reason = permanent ? failureReason(error) : 'max-attempts'
      const prefix = permanent
        ? 'publish failed permanently (not retried)'
        : `publish failed ${attempt} times`
      await this.#deadLetter(event, reason, `${prefix}: ${messageOf(error)}`, held, giveBack)
      return
    }
    held.delete(event.eventId)
    if (!(await giveBack())) return
    const errorMessage = `publish failed: ${messageOf(error)}`.slice(0, MAX_ERROR_MESSAGE)
    try {
      const delayMs = backoffDelayMs(attempt, this.#backoff, this.#random)
      this.#telemetry.end(event.eventId, 'retry')
      await this.#outbox.retryLater(event.eventId, { errorMessage, delayMs, workerId: this.workerId })
      this.#counters.retried++
    } catch (markError) {
      if (markError instanceof LeaseLostError) this.#counters.leaseLost++
      else this.#storeError('outbox.retryLater', markError)
    }
  }
}

/** One claimed event and its size in bytes. */
interface RunEvent {
  readonly stored: OutboxEvent
  readonly size: number
}

/**
 * A batch cut into what may publish concurrently: each unkeyed event alone, the events of one
 * ordering key together in claim order (their key's order), in the order each first appears.
 */
const runsOf = (events: readonly OutboxEvent[], sizes: readonly number[]): RunEvent[][] => {
  const runs: RunEvent[][] = []
  const byKey = new Map<string, RunEvent[]>()
  events.forEach((stored, index) => {
    const event = { stored, size: sizes[index] ?? 0 }
    if (stored.orderingKey === undefined) {
      runs.push([event])
      return
    }
    const run = byKey.get(stored.orderingKey)
    if (run) run.push(event)
    else {
      const started = [event]
      byKey.set(stored.orderingKey, started)
      runs.push(started)
    }
  })
  return runs
}

/**
 * The relay's `keyRun`: the option (1..10,000) on a store that declares `keyRuns`, default
 * {@link DEFAULT_KEY_RUN}; 1 on any other store, which refuses a value above 1 here rather
 * than on every claim.
 */
const resolveKeyRun = (
  validate: Validator,
  value: number | undefined,
  outbox: OutboxRepository<never>,
): number => {
  const keyRun = value === undefined ? undefined : validate.positiveInteger(value, 'keyRun', MAX_LIMIT)
  const supported = outbox.keyRuns === true && typeof outbox.release === 'function'
  if (supported) return keyRun ?? DEFAULT_KEY_RUN
  if (keyRun !== undefined && keyRun > 1)
    throw new ValidationError(
      COMPONENT,
      `keyRun ${keyRun} needs a store whose capabilities declare keyRuns (this outbox's keyRuns is not true): ` +
        'leave keyRun out or set it to 1',
    )
  return 1
}
