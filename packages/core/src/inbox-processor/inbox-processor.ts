import type { Capabilities } from '../capabilities.js'
import { type Clock, systemClock } from '../clock.js'
import { LeaseLostError, ValidationError } from '../errors.js'
import type { InboxEvent, InboxParams, InboxRepository } from '../inbox.js'
import { type LoggerOption, resolveLogger, type TxboxLogger } from '../logger.js'
import {
  type BackoffOptions,
  backoffDelayMs,
  type ResolvedBackoff,
  resolveBackoff,
} from '../relay/backoff.js'
import type { HealthReport } from '../relay/metrics.js'
import { errorFields, messageOf } from '../relay/sleep.js'
import { InboxTelemetry, type MessageTrace } from '../telemetry/inbox-telemetry.js'
import type { TransactionalStore } from '../transactions/transactional-store.js'
import { MAX_NAME_LENGTH, Validator } from '../validation.js'
import { KeyOrder } from './key-order.js'
import type {
  InboxHandler,
  InboxMessage,
  InboxSource,
  InboxSubscription,
  TransactionRunner,
} from './types.js'

const COMPONENT = 'inbox-processor'
const MAX_ERROR_MESSAGE = 2_000
/** `#` and a delivery number in base 36 (11 digits hold every safe integer). */
const CLAIM_SUFFIX_LENGTH = 12

/**
 * The store an {@link InboxProcessor} can take instead of `inbox`: its inbox, and its
 * `transaction` when it has one (any `TxboxStore` fits).
 */
export interface InboxProcessorStore<Tx> {
  readonly inbox: InboxRepository<Tx>
  readonly transaction?: TransactionalStore<Tx>['transaction'] | undefined
  /** Read at `start()`: a store without transactions cannot run the handler in one. */
  readonly capabilities?: Pick<Capabilities, 'transactions' | 'transactionsNote'> | undefined
  /** A store whose capabilities depend on the deployment (MongoDB) probes it at `start()`. */
  readonly detectCapabilities?:
    | (() => Promise<Pick<Capabilities, 'transactions' | 'transactionsNote'>>)
    | undefined
}

/** A store that runs transactions itself (`store.transaction`). */
export interface TransactionalInboxProcessorStore<Tx> extends InboxProcessorStore<Tx> {
  readonly transaction: TransactionalStore<Tx>['transaction']
}

/** The options every {@link InboxProcessor} takes, with or without a transaction runner. */
export interface InboxProcessorCommonOptions<Tx> {
  /** Any inbox repository. Pass this or `store`, not both. */
  inbox?: InboxRepository<Tx> | undefined
  /**
   * The store whose `inbox` to use. When it has `transaction` and no `transaction` option is
   * given, the handler and the processed mark run inside `store.transaction` (writes through
   * the same store join it without `{ tx }`). Pass this or `inbox`, not both.
   */
  store?: InboxProcessorStore<Tx> | undefined
  /** The messages (e.g. `createJetStreamInboxSource` from `@txbox/core/nats`). */
  source: InboxSource
  /**
   * Who holds the inbox claims (default `inbox-<random>`), at most 243 characters: each
   * delivery claims under its own `<workerId>#<n>` (`claimedBy` on the inbox row), so two
   * deliveries of one message to this processor never share a claim.
   */
  workerId?: string | undefined
  /** How long a claim protects a running handler from a concurrent duplicate (default 60,000 ms). */
  leaseMs?: number | undefined
  /** Messages handled at once (default 1). Keep 1 for stores with one connection (SQLite). */
  concurrency?: number | undefined
  /** Deliveries before a failing message is terminated (default 5): the inbox event stays `failed`. */
  maxDeliveries?: number | undefined
  /**
   * While a handler runs, tell the transport every this many milliseconds that the message
   * is still being worked on (JetStream `working()`, which restarts its ack wait), so a long
   * handler is not redelivered meanwhile. Off by default; set it below the consumer's ack wait.
   */
  ackProgressEveryMs?: number | undefined
  /**
   * How long a keyed message put back for redelivery keeps the later messages of its key
   * waiting when it does not come back (default 300,000 ms): JetStream drops a message after
   * the consumer's `max_deliver`, and the key must not wait for it forever.
   */
  orderHoldMs?: number | undefined
  /** Redelivery delay after a handler error (`nak(delay)`), by delivery count. */
  backoff?: BackoffOptions | undefined
  clock?: Clock | undefined
  random?: (() => number) | undefined
  /**
   * Where the processor logs (terminated messages, handler failures, store errors). Default:
   * warnings and errors on stderr, one JSON object per line. Takes a `TxboxLogger` (`console`
   * fits) or a pino/bunyan logger as is; `silentLogger` logs nothing.
   */
  logger?: LoggerOption | undefined
}

/** A processor whose handler writes in the same transaction as the processed mark. */
export interface TransactionalInboxProcessorOptions<Tx> extends InboxProcessorCommonOptions<Tx> {
  /**
   * Runs the handler and the processed mark in one transaction of the inbox's store, so the
   * handler's writes and the mark commit together (exactly-once effects in that database).
   * `store.transaction` fits as it is.
   */
  transaction: TransactionRunner<Tx>
  /** The user's work for one event; `tx` is the open transaction. */
  handler: InboxHandler<Tx>
}

/**
 * A processor built on a store that has `store.transaction`, without a `transaction` option:
 * the handler and the processed mark run inside `store.transaction`.
 */
export interface StoreTransactionInboxProcessorOptions<Tx> extends InboxProcessorCommonOptions<Tx> {
  store: TransactionalInboxProcessorStore<Tx>
  inbox?: undefined
  transaction?: undefined
  /** The user's work for one event; `tx` is the open transaction of `store.transaction`. */
  handler: InboxHandler<Tx>
}

/**
 * A processor without a transaction: the handler runs first and the processed mark follows
 * (at-least-once effects if the process dies in between). `transaction: false` opts out of
 * a store's `store.transaction`.
 */
export interface PlainInboxProcessorOptions<Tx> extends InboxProcessorCommonOptions<Tx> {
  /** A store without `transaction` (or `transaction: false` to opt out of it). */
  store?: (InboxProcessorStore<Tx> & { readonly transaction?: undefined }) | undefined
  transaction?: undefined
  /** The user's work for one event; `tx` is `undefined`. */
  handler: InboxHandler<undefined>
}

/** A processor that opts out of its store's `store.transaction`: handler, then the processed mark. */
export interface NonTransactionalInboxProcessorOptions<Tx> extends InboxProcessorCommonOptions<Tx> {
  transaction: false
  /** The user's work for one event; `tx` is `undefined`. */
  handler: InboxHandler<undefined>
}

/**
 * A processor whose runner is only known at run time (`TransactionRunner<Tx> | undefined`,
 * or a store that may lack `transaction`): the handler must accept both.
 */
export interface MaybeTransactionalInboxProcessorOptions<Tx> extends InboxProcessorCommonOptions<Tx> {
  transaction?: TransactionRunner<Tx> | false | undefined
  /** The user's work for one event; `tx` is the open transaction when there is one. */
  handler: InboxHandler<Tx | undefined>
}

/**
 * Options of {@link InboxProcessor}. The handler's `tx` follows from them: the store's
 * transaction with a `transaction` runner or a store that has `store.transaction`,
 * `undefined` without one.
 */
export type InboxProcessorOptions<Tx> =
  | TransactionalInboxProcessorOptions<Tx>
  | StoreTransactionInboxProcessorOptions<Tx>
  | PlainInboxProcessorOptions<Tx>
  | NonTransactionalInboxProcessorOptions<Tx>
  | MaybeTransactionalInboxProcessorOptions<Tx>

/** Counters of an {@link InboxProcessor}. */
export interface InboxProcessorCounters {
  /** Messages received. */
  received: number
  /** Handlers that ran and committed (with the processed mark). */
  processed: number
  /** Messages acked without running the handler: the event was already processed. */
  duplicates: number
  /** Messages put back because another worker's handler holds the event right now. */
  inFlightElsewhere: number
  /** Keyed messages put back, handler not run, because an earlier message of their key awaits redelivery. */
  heldForOrder: number
  /** Handler (or processed-mark) failures. */
  handlerErrors: number
  /** Messages nak'ed for redelivery after a failure. */
  redelivered: number
  /** Messages terminated after `maxDeliveries` (or unstorable). */
  terminated: number
  /** Store calls that failed outside a handler (claim, markAsFailed). */
  storeErrors: number
  /**
   * Marks refused with `LeaseLostError`: this worker's lease had expired and another worker
   * took the event over (a processed mark's transaction rolled back). Put back, never acked.
   */
  leaseLost: number
}

/** A point-in-time view of a processor. */
export interface InboxProcessorMetrics extends InboxProcessorCounters {
  workerId: string
  state: 'idle' | 'running' | 'stopping' | 'stopped'
  inFlight: number
  lastTickAt: number | null
}

type State = InboxProcessorMetrics['state']

/**
 * The id a message is recorded under. JetStream messages from txbox always carry
 * `Nats-Msg-Id`; a message published by something else may not, and then the delivery's
 * stream position is its identity: `<stream>:<created>:<seq>`, with the stream's creation
 * time, because a stream deleted and re-created under its name restarts at sequence 1 (a
 * republish of the same payload is a new event: only the producer can say two messages are
 * the same event). A source that cannot tell the creation time gives `<stream>:<seq>`.
 */
export const inboxEventId = (message: InboxMessage): string | undefined => {
  if (message.eventId !== undefined && message.eventId.length > 0) return message.eventId
  if (message.stream === undefined || message.streamSeq === undefined) return undefined
  return message.streamCreated === undefined
    ? `${message.stream}:${message.streamSeq}`
    : `${message.stream}:${message.streamCreated}:${message.streamSeq}`
}

/**
 * Consumes messages into the inbox and runs the handler once per event:
 * claim (atomic dedupe + lease) -> handler and `markAsProcessed` (in one transaction when a
 * runner is given) -> ack. A duplicate of a processed event is acked without running the
 * handler; a duplicate of an event another worker is handling right now is nak'ed until
 * that worker finishes; a handler error marks the event `failed` and naks with backoff, and
 * after `maxDeliveries` the message is terminated (the inbox keeps the `failed` event for a
 * redrive).
 */
export class InboxProcessor<Tx = never> {
  readonly workerId: string
  /** Deliveries claimed so far: the `<n>` of the next `<workerId>#<n>`. */
  #claims = 0
  readonly #inbox: InboxRepository<Tx>
  readonly #source: InboxSource
  /** Runs the handler and the processed mark in one transaction; undefined: one after the other. */
  readonly #transaction: TransactionRunner<Tx> | undefined
  /** The store whose `store.transaction` the handlers run in, when that is where the runner came from. */
  #transactionStore: InboxProcessorStore<Tx> | undefined
  readonly #handler: InboxHandler<Tx | undefined>
  readonly #leaseMs: number
  readonly #ackProgressEveryMs: number | undefined
  readonly #concurrency: number
  readonly #maxDeliveries: number
  readonly #backoff: ResolvedBackoff
  readonly #clock: Clock
  readonly #random: () => number
  readonly #logger: TxboxLogger
  readonly #keyOrder: KeyOrder

  #state: State = 'idle'
  #subscription: InboxSubscription | undefined
  /** The pending start() (settled, never rejecting), so stop() can wait for it. */
  #starting: Promise<void> | undefined
  #loop: Promise<void> | undefined
  #inFlight = 0
  #lastTickAt: number | null = null
  /** OpenTelemetry spans and metrics, when `@opentelemetry/api` is installed. */
  readonly #telemetry: InboxTelemetry = new InboxTelemetry(this)
  #counters: InboxProcessorCounters = {
    received: 0,
    processed: 0,
    duplicates: 0,
    inFlightElsewhere: 0,
    heldForOrder: 0,
    handlerErrors: 0,
    redelivered: 0,
    terminated: 0,
    storeErrors: 0,
    leaseLost: 0,
  }

  /** With a `transaction` runner: the handler's `tx` is the store's open transaction. */
  constructor(options: TransactionalInboxProcessorOptions<Tx>)
  /** With a store that has `store.transaction`: the handler runs inside it. */
  constructor(options: StoreTransactionInboxProcessorOptions<Tx>)
  /** Without a runner: the handler's `tx` is `undefined`. */
  constructor(options: PlainInboxProcessorOptions<Tx>)
  /** `transaction: false`: no transaction even if the store has one; `tx` is `undefined`. */
  constructor(options: NonTransactionalInboxProcessorOptions<Tx>)
  /** A runner that may be `undefined`: the handler's `tx` is `Tx | undefined`. */
  constructor(options: MaybeTransactionalInboxProcessorOptions<Tx>)
  constructor(options: InboxProcessorOptions<Tx>) {
    if (typeof options !== 'object' || options === null)
      throw new ValidationError(COMPONENT, 'options must be an object')
    if (options.inbox !== undefined && options.store !== undefined)
      throw new ValidationError(COMPONENT, 'pass options.store or options.inbox, not both')
    const inbox = options.store === undefined ? options.inbox : options.store?.inbox
    if (typeof inbox?.claim !== 'function')
      throw new ValidationError(
        COMPONENT,
        options.store === undefined
          ? 'options.inbox must be an InboxRepository (or pass options.store)'
          : 'options.store.inbox must be an InboxRepository',
      )
    if (typeof options.source?.subscribe !== 'function')
      throw new ValidationError(COMPONENT, 'options.source must have subscribe()')
    if (typeof options.handler !== 'function')
      throw new ValidationError(COMPONENT, 'options.handler must be a function')
    this.#inbox = inbox
    this.#source = options.source
    this.#handler = options.handler as InboxHandler<Tx | undefined>
    this.#transaction = this.#runner(options)
    // The limits of the store calls and timers each option feeds (inbox.claim's workerId and
    // leaseMs, setInterval), so a value accepted here cannot fail on every message later.
    const validate = new Validator(COMPONENT)
    this.workerId = validate.workerId(
      options.workerId ?? `inbox-${globalThis.crypto.randomUUID().slice(0, 8)}`,
    )
    if (this.workerId.length > MAX_NAME_LENGTH - CLAIM_SUFFIX_LENGTH)
      throw new ValidationError(
        COMPONENT,
        `workerId must be at most ${MAX_NAME_LENGTH - CLAIM_SUFFIX_LENGTH} characters (each delivery claims as "<workerId>#<n>", at most ${MAX_NAME_LENGTH}); got ${this.workerId.length}`,
      )
    this.#leaseMs = validate.leaseMs(options.leaseMs ?? 60_000)
    this.#ackProgressEveryMs =
      options.ackProgressEveryMs === undefined
        ? undefined
        : validate.timerMs(options.ackProgressEveryMs, 'ackProgressEveryMs', 1)
    this.#concurrency = validate.positiveInteger(options.concurrency ?? 1, 'concurrency')
    this.#maxDeliveries = validate.positiveInteger(options.maxDeliveries ?? 5, 'maxDeliveries')
    this.#backoff = resolveBackoff(
      COMPONENT,
      options.backoff ?? { baseMs: 1_000, maxMs: 60_000, jitter: 0.2 },
    )
    this.#clock = options.clock ?? systemClock
    this.#random = options.random ?? Math.random
    this.#logger = resolveLogger(COMPONENT, options.logger, { workerId: this.workerId })
    this.#keyOrder = new KeyOrder(validate.timerMs(options.orderHoldMs ?? 300_000, 'orderHoldMs', 1))
  }

  /**
   * A processor that runs handlers in `store.transaction` on a deployment without
   * transactions (MongoDB standalone, FerretDB v1) would fail every message: it refuses to
   * start instead, saying how to run without one.
   */
  async #checkStoreTransactions(): Promise<void> {
    const store = this.#transactionStore
    if (store === undefined) return
    const capabilities =
      typeof store.detectCapabilities === 'function' ? await store.detectCapabilities() : store.capabilities
    if (capabilities?.transactions !== 'none') return
    throw new ValidationError(
      COMPONENT,
      `options.store has no transactions on this server${capabilities.transactionsNote ? ` (${capabilities.transactionsNote})` : ''}, so handlers cannot run in store.transaction: pass transaction: false (the handler runs, then the processed mark) or use a server with transactions`,
    )
  }

  /** The `transaction` option, or else the store's own `store.transaction`, unless `false`. */
  #runner(options: InboxProcessorOptions<Tx>): TransactionRunner<Tx> | undefined {
    const { transaction } = options
    if (transaction === false) return undefined
    if (transaction !== undefined) {
      if (typeof transaction !== 'function')
        throw new ValidationError(
          COMPONENT,
          'options.transaction must be a function (fn) => Promise, false (no transaction), or left out',
        )
      return transaction
    }
    const store = options.store
    if (store?.transaction === undefined) return undefined
    if (typeof store.transaction !== 'function')
      throw new ValidationError(COMPONENT, 'options.store.transaction must be a function or absent')
    const transactional = store as TransactionalInboxProcessorStore<Tx>
    this.#transactionStore = transactional
    // Called as a method: a store written as a class keeps its `this`.
    return (fn) => transactional.transaction(fn)
  }

  /** Subscribes and starts handling messages in the background. */
  async start(): Promise<void> {
    if (this.#state !== 'idle')
      throw new ValidationError(COMPONENT, `the processor is already ${this.#state}`)
    this.#state = 'running'
    const starting = this.#subscribe()
    this.#starting = starting.catch(() => {})
    return starting
  }

  async #subscribe(): Promise<void> {
    // Spans are recorded from here on; only the metric instruments' registration is async.
    void this.#telemetry.open()
    let subscription: InboxSubscription
    try {
      await this.#checkStoreTransactions()
      subscription = await this.#source.subscribe()
    } catch (error) {
      // Nothing runs yet (e.g. the durable consumer does not exist): start() may be retried,
      // unless stop() was called meanwhile.
      if (this.#state === 'running') this.#state = 'idle'
      throw error
    }
    this.#subscription = subscription
    if (this.#state !== 'running') {
      // stop() ran while subscribing (e.g. SIGTERM during startup): the subscription it
      // could not see must not run on, or keep the process alive.
      await subscription.stop()
      this.#state = 'stopped'
      return
    }
    this.#lastTickAt = this.#clock().getTime()
    this.#loop = this.#run(subscription)
  }

  /**
   * Stops taking messages (ends the subscription it started, even one still being set up)
   * and waits for the handlers in flight to finish (and ack). Idempotent. The source's
   * connection, the store and its pool are yours: close them after `stop()` resolves.
   */
  async stop(): Promise<void> {
    if (this.#state === 'idle') {
      this.#state = 'stopped'
      // handle() without start() may have registered the instruments.
      this.#telemetry.close()
      return
    }
    if (this.#state === 'running') {
      this.#state = 'stopping'
      await this.#subscription?.stop()
    }
    await this.#starting
    await this.#loop
    if (this.#loop === undefined) this.#state = 'stopped'
  }

  /** The claim id of one delivery: unique within this processor, its workerId visible. */
  #nextClaimant(): string {
    this.#claims++
    return `${this.workerId}#${this.#claims.toString(36)}`
  }

  /** The processor's state. */
  get state(): State {
    return this.#state
  }

  counters(): InboxProcessorCounters {
    return { ...this.#counters }
  }

  async metrics(): Promise<InboxProcessorMetrics> {
    return {
      ...this.#counters,
      workerId: this.workerId,
      state: this.#state,
      inFlight: this.#inFlight,
      lastTickAt: this.#lastTickAt,
    }
  }

  /** Store reachable and transport connected; `loop` is ok while the processor runs. */
  async health(): Promise<HealthReport> {
    let store: HealthReport['store']
    try {
      await this.#inbox.getCountByStatus()
      store = { ok: true }
    } catch (error) {
      store = { ok: false, detail: messageOf(error) }
    }
    const reported = this.#source.health?.()
    const publisher = reported
      ? { ok: reported.ok, detail: reported.detail }
      : { ok: true, detail: 'the source does not report health' }
    const lastTickAgoMs = this.#lastTickAt === null ? null : this.#clock().getTime() - this.#lastTickAt
    const loop =
      this.#state === 'running'
        ? { ok: true, lastTickAgoMs }
        : { ok: false, lastTickAgoMs, detail: `the processor is ${this.#state}` }
    return { ok: store.ok && publisher.ok && loop.ok, store, publisher, loop }
  }

  async #run(subscription: InboxSubscription): Promise<void> {
    const running = new Set<Promise<void>>()
    try {
      for await (const message of subscription) {
        const work = this.handle(message).finally(() => running.delete(work))
        running.add(work)
        if (running.size >= this.#concurrency) await Promise.race(running)
      }
    } catch (error) {
      this.#logger.error('inbox subscription failed', { error: messageOf(error) })
    } finally {
      await Promise.allSettled(running)
      this.#telemetry.close()
      this.#state = 'stopped'
    }
  }

  /**
   * Handles one message to the end (ack, nak or term); never throws. Exposed for transports
   * that push messages themselves, and for tests.
   */
  async handle(message: InboxMessage): Promise<void> {
    void this.#telemetry.open()
    this.#inFlight++
    this.#counters.received++
    this.#lastTickAt = this.#clock().getTime()
    try {
      const key = message.orderingKey
      if (key === undefined) await this.#handle(message)
      else await this.#keyOrder.inTurn(key, () => this.#handleKeyed(message, key))
    } finally {
      this.#inFlight--
      this.#lastTickAt = this.#clock().getTime()
    }
  }

  /**
   * A keyed message: put back without running the handler while an earlier message of its
   * key awaits redelivery; else handled, and when it is put back itself it holds its key.
   */
  async #handleKeyed(message: InboxMessage, key: string): Promise<void> {
    const eventId = inboxEventId(message)
    const keySeq = message.keySeq
    if (eventId === undefined || keySeq === undefined) return this.#handle(message)
    const order = this.#keyOrder
    const nowMs = () => this.#clock().getTime()
    if (order.holds(key, eventId, keySeq, nowMs())) {
      this.#counters.heldForOrder++
      order.putBack(key, eventId, keySeq, nowMs())
      await this.#settle(() => message.nak(this.#delay(1)))
      return
    }
    await this.#handle({
      ...message,
      ack: () => {
        order.finished(key, eventId)
        return message.ack()
      },
      nak: (delayMs) => {
        order.putBack(key, eventId, keySeq, nowMs())
        return message.nak(delayMs)
      },
      term: (reason) => {
        order.finished(key, eventId)
        return message.term(reason)
      },
      ...(message.working === undefined ? {} : { working: message.working.bind(message) }),
    })
  }

  async #handle(message: InboxMessage): Promise<void> {
    const eventId = inboxEventId(message)
    const trace = this.#telemetry.receive(message, eventId)
    if (eventId === undefined) {
      trace.received('terminated')
      this.#counters.terminated++
      await this.#settle(() => message.term('no Nats-Msg-Id and no stream position: cannot deduplicate'))
      return
    }
    const params: InboxParams = {
      eventId,
      subject: message.subject,
      payload: message.payload,
      headers: message.storedHeaders,
      stream: message.stream,
      streamSeq: message.streamSeq,
    }
    let claim: { event: InboxEvent; shouldProcess: boolean }
    // This delivery's own claim: JetStream redelivers a message whose handler outlives its
    // ack wait, possibly to this processor. Sharing the processor's id, the new copy would take
    // the expired claim over from the old one and both would pass the fence; the old copy's
    // late markAsFailed would then fail the message under the running new one.
    const claimant = this.#nextClaimant()
    try {
      claim = await this.#inbox.claim(params, { leaseMs: this.#leaseMs, workerId: claimant })
    } catch (error) {
      if (error instanceof ValidationError) {
        // The message can never be stored (e.g. an id over 255 characters): retrying is futile.
        trace.received('terminated', undefined, error)
        this.#counters.terminated++
        this.#logger.error('message cannot be stored in the inbox; terminated', {
          eventId,
          error: error.message,
        })
        await this.#settle(() => message.term(error.message.slice(0, MAX_ERROR_MESSAGE)))
        return
      }
      trace.received('store-error', undefined, error)
      this.#counters.storeErrors++
      this.#logger.error('inbox.claim failed', { eventId, ...errorFields(error) })
      await this.#settle(() => message.nak(this.#delay(message.deliveryCount)))
      return
    }
    trace.received(
      claim.shouldProcess
        ? 'claimed'
        : claim.event.status === 'processed'
          ? 'skipped-duplicate'
          : 'in-flight-elsewhere',
      claim.event,
    )
    if (!claim.shouldProcess) {
      if (claim.event.status === 'processed') {
        this.#counters.duplicates++
        await this.#settle(() => message.ack())
      } else {
        // Another worker holds a live lease: its handler may still fail, so this copy must
        // not be acked away. Come back once that lease has had time to end.
        this.#counters.inFlightElsewhere++
        await this.#settle(() => message.nak(this.#leaseMs))
      }
      return
    }
    const event = claim.event
    let lostOnMark: LeaseLostError | undefined
    const working = message.working?.bind(message)
    const progress =
      this.#ackProgressEveryMs === undefined || working === undefined
        ? undefined
        : setInterval(() => {
            void this.#settle(working)
          }, this.#ackProgressEveryMs)
    try {
      const context = { event, headers: message.headers, message }
      const handler = this.#handler
      const transaction = this.#transaction
      // Fenced by this worker's claim: a worker whose lease expired and whose event another
      // worker took over gets LeaseLostError inside its transaction, which then rolls back,
      // so the handler's writes never commit twice.
      const markProcessed = async (tx: Tx | undefined): Promise<void> => {
        try {
          await this.#inbox.markAsProcessed(event.eventId, { tx, workerId: claimant })
        } catch (error) {
          if (error instanceof LeaseLostError) lostOnMark = error
          throw error
        }
      }
      // Inside the `process` span: the handler's own spans nest under it.
      await trace.process(async () => {
        if (transaction !== undefined) {
          await transaction(async (tx) => {
            await handler({ ...context, tx })
            await markProcessed(tx)
          })
        } else {
          await handler({ ...context, tx: undefined })
          await markProcessed(undefined)
        }
      })
    } catch (error) {
      if (lostOnMark !== undefined)
        await this.#leaseLost(message, event, lostOnMark, trace, 'markAsProcessed')
      else await this.#failed(message, event, claimant, error, trace)
      return
    } finally {
      if (progress !== undefined) clearInterval(progress)
    }
    this.#counters.processed++
    await this.#settle(() => message.ack())
    trace.processed()
  }

  async #failed(
    message: InboxMessage,
    event: InboxEvent,
    claimant: string,
    error: unknown,
    trace: MessageTrace,
  ): Promise<void> {
    this.#counters.handlerErrors++
    const errorMessage = messageOf(error).slice(0, MAX_ERROR_MESSAGE)
    try {
      await this.#inbox.markAsFailed(event.eventId, errorMessage, { workerId: claimant })
    } catch (markError) {
      if (markError instanceof LeaseLostError) {
        await this.#leaseLost(message, event, markError, trace, 'markAsFailed')
        return
      }
      // The claim's lease expires on its own; the redelivery then claims the event again. So
      // it must come back even after its last attempt: terminated now, the event would stay
      // `processing` for good, neither dead-lettered nor delivered again.
      this.#counters.storeErrors++
      this.#logger.error('inbox.markAsFailed failed', { eventId: event.eventId, error: messageOf(markError) })
      trace.failed(error, false)
      this.#counters.redelivered++
      await this.#settle(() => message.nak(Math.max(this.#leaseMs, this.#delay(message.deliveryCount))))
      return
    }
    // JetStream counts every delivery, also those that never reached the handler because the
    // inbox store was down; the store counts only deliveries it claimed. The smaller of the
    // two bounds the handler's attempts, so a store outage cannot use up maxDeliveries and
    // dead-letter an event whose handler failed once.
    const attempts = Math.min(message.deliveryCount, event.deliveries)
    trace.failed(error, attempts >= this.#maxDeliveries)
    if (attempts >= this.#maxDeliveries) {
      this.#counters.terminated++
      this.#logger.error('message terminated after max deliveries', {
        eventId: event.eventId,
        deliveries: attempts,
        error: errorMessage,
      })
      await this.#settle(() => message.term(`failed ${attempts} times: ${errorMessage}`.slice(0, 500)))
      return
    }
    this.#counters.redelivered++
    this.#logger.warn('handler failed; redelivering', { eventId: event.eventId, error: errorMessage })
    await this.#settle(() => message.nak(this.#delay(attempts)))
  }

  /**
   * A mark refused because another worker took the event over after this worker's lease
   * expired. Never acked: the other worker's handler may still fail, and an acked message
   * would then never come back. Put back for one lease, so the redelivery finds the event
   * processed (acked as a duplicate), failed (processed again) or still held (put back).
   * Never terminated either: this worker's attempt does not count against the event.
   */
  async #leaseLost(
    message: InboxMessage,
    event: InboxEvent,
    error: LeaseLostError,
    trace: MessageTrace,
    operation: 'markAsProcessed' | 'markAsFailed',
  ): Promise<void> {
    this.#counters.leaseLost++
    this.#counters.redelivered++
    this.#logger.warn(
      `inbox.${operation}: lease lost (the message was taken over, or finished by another delivery); redelivering`,
      {
        eventId: event.eventId,
        error: error.message,
      },
    )
    trace.failed(error, false)
    await this.#settle(() => message.nak(this.#leaseMs))
  }

  #delay(deliveryCount: number): number {
    return backoffDelayMs(Math.max(1, deliveryCount), this.#backoff, this.#random)
  }

  /** ack / nak / term errors (connection gone) only mean the transport redelivers later. */
  async #settle(action: () => void | Promise<void>): Promise<void> {
    try {
      await action()
    } catch (error) {
      this.#logger.warn('could not settle the message; the transport will redeliver it', {
        error: messageOf(error),
      })
    }
  }
}
