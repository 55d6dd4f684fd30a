import { repeatInBatches } from '../batches.js'
import { addMs, type Clock, cutoffDays, cutoffMinutes } from '../clock.js'
import { outboxCounts } from '../counts.js'
import { EventNotFoundError, StorageError, ValidationError } from '../errors.js'
import { assertEventFits } from '../nats-message.js'
import type {
  ClaimOptions,
  EnqueueParams,
  FenceOptions,
  OutboxCounts,
  OutboxEvent,
  OutboxRepository,
  ReleaseOptions,
  RenewLeaseOptions,
  RetryLaterOptions,
  WriteOptions,
} from '../outbox.js'
import { withEnqueueContext } from '../telemetry/enqueue-context.js'
import type { AmbientTransactions } from '../transactions/ambient-transactions.js'
import { Validator } from '../validation.js'
import { assertFenceApplied } from './fence-outcome.js'
import {
  type ClaimRequest,
  type FencedOutcome,
  type NewOutboxEventParams,
  type OutboxChange,
  type RepositorySettings,
  type RequeueOutcome,
  type StatusCountRows,
  SWEEP_BATCH,
} from './primitives.js'
import { type ClassifyStorageError, classifyUnknown, runStorageOperation } from './storage-failure.js'

/**
 * The outbox contract, implemented once over a store's primitives.
 *
 * Every public method is written here: input validation, the NATS size check, the
 * operation name in errors, wrapping driver errors, empty-input shortcuts, first-wins
 * dedupe of repeated ids, result order, "not found" vs "lease lost", sweeps in bounded
 * batches. An adapter extends this class and implements only the `protected abstract`
 * primitives below, each one atomic against every other client of the database. The
 * primitives receive valid, deduplicated input and the instants to write, never read the
 * clock, and report outcomes instead of throwing txbox errors.
 */
export abstract class OutboxRepositoryKernel<Tx = never> implements OutboxRepository<Tx> {
  /** The adapter's name, the `[txbox] [<adapter>]` of its errors. */
  readonly adapter: string
  /** The largest event accepted, as NATS message bytes (see `natsMessageBytes`). */
  readonly maxEventBytes: number
  protected readonly clock: Clock
  protected readonly validate: Validator
  readonly #classify: ClassifyStorageError
  readonly #transaction: ((tx: Tx | undefined) => Tx | undefined) | undefined
  readonly #ambient: AmbientTransactions<Tx> | undefined
  readonly #sweepBatch: number
  readonly #orderingKeys: boolean
  /** The store's `keyRuns` capability: `claim` takes `keyRun` above 1 and `release` works. */
  readonly keyRuns: boolean

  constructor(settings: RepositorySettings<Tx>) {
    this.adapter = settings.adapter
    this.clock = settings.clock
    this.maxEventBytes = settings.maxEventBytes
    this.validate = new Validator(settings.adapter, 'outbox')
    this.#classify = settings.classify ?? classifyUnknown
    this.#transaction = settings.transaction
    this.#ambient = settings.ambient
    this.#sweepBatch = settings.sweepBatch ?? SWEEP_BATCH
    this.#orderingKeys = settings.orderingKeys === true
    this.keyRuns = this.#orderingKeys && settings.keyRuns === true
  }

  // ---------------------------------------------------------------- primitives ---

  /**
   * Inserts the events whose id is not stored yet (`pending`, `retryCount` 0, `enqueuedAt` =
   * `now`, `availableAt` as given) and answers the stored event of every id: the existing one
   * unchanged, or the new one. Ids are distinct. With `tx` the insert joins the caller's
   * transaction (or, for a store that queues writes, answers the event as it will be stored).
   * Each answered event is an object of its own, kept nowhere else (a row read back, or
   * `newOutboxEvent`): the kernel hands it to the caller as it is, who may change it.
   */
  protected abstract insertEvents(
    events: readonly NewOutboxEventParams[],
    now: Date,
    tx: Tx | undefined,
  ): Promise<ReadonlyMap<string, OutboxEvent>>

  /** Sets `publishing` and `claimedAt` = `now`; false when the id is not stored. */
  protected abstract setPublishing(eventId: string, now: Date): Promise<boolean>

  /**
   * Applies `change` and clears the lease, in one atomic step that checks the fence: with
   * `workerId`, only while the event is `publishing` and claimed by that worker.
   */
  protected abstract applyFenced(
    eventId: string,
    change: OutboxChange,
    workerId: string | undefined,
  ): Promise<FencedOutcome>

  /** Due `pending` events (`availableAt <= now`) in enqueue order, at most `limit`. Read-only. */
  protected abstract selectPending(now: Date, limit: number): Promise<OutboxEvent[]>

  /** Deletes at most `limit` `sent` events with `sentAt < cutoff`; answers how many. */
  protected abstract deleteSent(cutoff: Date, limit: number): Promise<number>

  /**
   * Moves `publishing` events with `claimedAt < cutoff` back to `pending` (lease cleared):
   * at most `limit` (a store may move them all in one atomic statement); answers how many.
   */
  protected abstract resetPublishing(cutoff: Date, now: Date, limit: number): Promise<number>

  /** `(status, count)` for the statuses present. */
  protected abstract countStatuses(): Promise<StatusCountRows>

  /** The claim as `claim` describes it, for valid options; events in enqueue order. */
  protected abstract claimEvents(request: ClaimRequest): Promise<OutboxEvent[]>

  /** Sets `leaseUntil` on the events `workerId` holds (`publishing`, claimed by it); answers their ids. */
  protected abstract renewLeases(
    eventIds: readonly string[],
    workerId: string,
    leaseUntil: Date,
  ): Promise<Iterable<string>>

  /**
   * `sent`, `sentAt` = `now`, lease cleared, for each id (fenced as `applyFenced` when
   * `workerId` is given); answers the ids applied. Ids are distinct.
   */
  protected abstract markSent(
    eventIds: readonly string[],
    workerId: string | undefined,
    now: Date,
  ): Promise<Iterable<string>>

  /**
   * Moves the `failed` ones among `eventIds` to `pending`, due at `now`, `retryCount` 0, lease
   * cleared. Ids are distinct. Answers how many moved and which ids are not stored.
   */
  protected abstract requeue(eventIds: readonly string[], now: Date): Promise<RequeueOutcome>

  /** `failed` events, oldest enqueued first, at most `limit`. */
  protected abstract selectFailed(limit: number): Promise<OutboxEvent[]>

  /** The stored event, or null. */
  protected abstract read(eventId: string): Promise<OutboxEvent | null>

  /**
   * Back to `pending`, lease cleared, everything else unchanged, for each id that is
   * `publishing` and claimed by `workerId`; answers the ids applied. Ids are distinct. Only
   * called on a store whose settings declare `keyRuns`, which must override it.
   */
  protected releaseHeld(
    _eventIds: readonly string[],
    _workerId: string,
    _now: Date,
  ): Promise<Iterable<string>> {
    return Promise.reject(
      new Error(`${this.adapter}: the store declares keyRuns but does not implement releaseHeld`),
    )
  }

  // ---------------------------------------------------------------- the contract ---

  /** Runs a primitive as `operation`: driver errors become a classified StorageError. */
  protected storage<T>(operation: string, run: () => Promise<T>): Promise<T> {
    return runStorageOperation(this.adapter, `outbox.${operation}`, this.#classify, run)
  }

  #tx(options: WriteOptions<Tx> | undefined): Tx | undefined {
    const given = this.validate.writeOptions(options)?.tx as Tx | undefined
    if (given !== undefined) this.#ambient?.assertJoinable(given)
    const tx = given ?? this.#ambient?.current()
    return this.#transaction === undefined ? tx : this.#transaction(tx)
  }

  #fenceOutcome(
    outcome: FencedOutcome,
    eventId: string,
    workerId: string | undefined,
    operation: string,
  ): void {
    assertFenceApplied(outcome, { adapter: this.adapter, side: 'outbox', operation }, eventId, workerId)
  }

  async findOrCreate(params: EnqueueParams, options?: WriteOptions<Tx>): Promise<OutboxEvent> {
    const valid = this.validate.enqueueParams(params)
    this.#assertKeySupported(valid)
    assertEventFits(this.adapter, valid, this.maxEventBytes)
    const tx = this.#tx(options)
    const [event] = await this.#enqueue('findOrCreate', this.#traced([valid]), tx)
    return event as OutboxEvent
  }

  async findOrCreateMany(
    params: readonly EnqueueParams[],
    options?: WriteOptions<Tx>,
  ): Promise<OutboxEvent[]> {
    const valid = this.validate.enqueueParamsList(params)
    for (const event of valid) {
      this.#assertKeySupported(event)
      assertEventFits(this.adapter, event, this.maxEventBytes)
    }
    const tx = this.#tx(options)
    if (valid.length === 0) return []
    return this.#enqueue('findOrCreateMany', this.#traced(valid), tx)
  }

  /** A store that does not keep ordering keys refuses a keyed event rather than drop its key. */
  #assertKeySupported(event: EnqueueParams): void {
    if (event.orderingKey === undefined || this.#orderingKeys) return
    throw new ValidationError(
      this.adapter,
      `outbox: orderingKey is not supported by this store (its capabilities do not declare orderingKeys); got it on ${JSON.stringify(event.eventId)}: ` +
        'use a store that keeps ordering keys, or enqueue without orderingKey',
    )
  }

  /** The events with the active OpenTelemetry trace context in their headers, when there is one. */
  #traced(valid: readonly EnqueueParams[]): readonly EnqueueParams[] {
    return withEnqueueContext(valid, this.maxEventBytes)
  }

  /**
   * First occurrence wins inside a batch: every position of an id gets the one stored event.
   * `valid` holds the kernel's own objects (built by validation or by the trace context, never
   * the caller's), so each becomes the primitive's input in place, its `availableAt` resolved.
   * The primitive answers objects of their own (see {@link insertEvents}): the first position
   * of an id gets that object, a repeated one a copy.
   */
  async #enqueue(
    operation: string,
    valid: readonly EnqueueParams[],
    tx: Tx | undefined,
  ): Promise<OutboxEvent[]> {
    const now = this.clock()
    let unique = valid as NewOutboxEventParams[]
    let ids: Set<string> | undefined
    for (let i = 0; i < valid.length; i++) {
      const event = valid[i] as EnqueueParams
      if (ids?.has(event.eventId)) {
        // The first repeat: from here on, only first occurrences go to the store.
        if (unique === valid) unique = valid.slice(0, i) as NewOutboxEventParams[]
        continue
      }
      if (event.availableAt === undefined) event.availableAt = now
      if (unique !== valid) unique.push(event as NewOutboxEventParams)
      if (valid.length > 1) {
        ids ??= new Set()
        ids.add(event.eventId)
      }
    }
    const stored = await this.storage(operation, () => this.insertEvents(unique, now, tx))
    const repeated = unique === valid ? undefined : new Set<string>()
    const answer: OutboxEvent[] = new Array(valid.length)
    for (let i = 0; i < valid.length; i++) {
      const { eventId } = valid[i] as EnqueueParams
      const found = stored.get(eventId)
      if (!found) {
        throw new StorageError(
          this.adapter,
          `outbox.${operation}`,
          undefined,
          `the store did not answer the stored event of ${JSON.stringify(eventId)}`,
        )
      }
      // Two positions, two objects: a caller mutating one does not change the other.
      if (repeated === undefined) answer[i] = found
      else if (repeated.has(eventId)) answer[i] = { ...found }
      else {
        repeated.add(eventId)
        answer[i] = found
      }
    }
    return answer
  }

  async markAsPublishing(eventId: string): Promise<void> {
    const id = this.validate.eventId(eventId)
    const now = this.clock()
    const found = await this.storage('markAsPublishing', () => this.setPublishing(id, now))
    if (!found) throw new EventNotFoundError(this.adapter, id)
  }

  async markAsSent(eventId: string, options?: FenceOptions): Promise<void> {
    const id = this.validate.eventId(eventId)
    const workerId = this.validate.fence(options)
    const change: OutboxChange = { status: 'sent', sentAt: this.clock() }
    const outcome = await this.storage('markAsSent', () => this.applyFenced(id, change, workerId))
    this.#fenceOutcome(outcome, id, workerId, 'markAsSent')
  }

  async markAsFailed(eventId: string, errorMessage: string, options?: FenceOptions): Promise<void> {
    const id = this.validate.eventId(eventId)
    const message = this.validate.text(errorMessage, 'errorMessage')
    const workerId = this.validate.fence(options)
    const change: OutboxChange = { status: 'failed', errorMessage: message }
    const outcome = await this.storage('markAsFailed', () => this.applyFenced(id, change, workerId))
    this.#fenceOutcome(outcome, id, workerId, 'markAsFailed')
  }

  async retryLater(eventId: string, options: RetryLaterOptions): Promise<void> {
    const id = this.validate.eventId(eventId)
    const { errorMessage, delayMs, workerId } = this.validate.retryLaterOptions(options)
    const now = this.clock()
    const change: OutboxChange = { status: 'pending', errorMessage, availableAt: addMs(now, delayMs), now }
    const outcome = await this.storage('retryLater', () => this.applyFenced(id, change, workerId))
    this.#fenceOutcome(outcome, id, workerId, 'retryLater')
  }

  async findPending(options?: { limit?: number | undefined }): Promise<OutboxEvent[]> {
    const limit = this.validate.limitOption(options)
    const now = this.clock()
    return this.storage('findPending', () => this.selectPending(now, limit))
  }

  async cleanup(olderThanDays: number): Promise<number> {
    const cutoff = cutoffDays(this.clock(), this.validate.nonNegative(olderThanDays, 'olderThanDays'))
    return this.storage('cleanup', () =>
      repeatInBatches(this.#sweepBatch, (limit) => this.deleteSent(cutoff, limit)),
    )
  }

  async resetStale(staleMinutes: number): Promise<number> {
    const now = this.clock()
    const cutoff = cutoffMinutes(now, this.validate.nonNegative(staleMinutes, 'staleMinutes'))
    return this.storage('resetStale', () =>
      repeatInBatches(this.#sweepBatch, (limit) => this.resetPublishing(cutoff, now, limit)),
    )
  }

  async getCountByStatus(): Promise<OutboxCounts> {
    return this.storage('getCountByStatus', async () => outboxCounts(await this.countStatuses()))
  }

  async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const { limit, leaseMs, workerId, keyedDeadLetters } = this.validate.claimOptions(options)
    const keyRun = this.validate.keyRun(options.keyRun, limit)
    if (keyRun > 1) this.#assertKeyRuns(`claim with keyRun ${keyRun}`, 'claim with keyRun 1 (the default)')
    const now = this.clock()
    const request: ClaimRequest = {
      now,
      leaseUntil: addMs(now, leaseMs),
      workerId,
      limit,
      deadLettersBlockKeys: keyedDeadLetters === 'block',
      keyRun,
    }
    return this.storage('claim', () => this.claimEvents(request))
  }

  async renewLease(eventIds: readonly string[], options: RenewLeaseOptions): Promise<string[]> {
    const ids = this.validate.eventIds(eventIds)
    const { leaseMs, workerId } = this.validate.leaseOptions(options)
    if (ids.length === 0) return []
    const leaseUntil = addMs(this.clock(), leaseMs)
    const renewed = new Set(
      await this.storage('renewLease', () => this.renewLeases(distinct(ids), workerId, leaseUntil)),
    )
    return ids.filter((id) => renewed.has(id))
  }

  async markManyAsSent(eventIds: readonly string[], options?: FenceOptions): Promise<string[]> {
    const ids = this.validate.eventIds(eventIds)
    const workerId = this.validate.fence(options)
    if (ids.length === 0) return []
    const now = this.clock()
    const applied = new Set(
      await this.storage('markManyAsSent', () => this.markSent(distinct(ids), workerId, now)),
    )
    // The answer of applying the ids one by one: a repeated id is applied again without a
    // fence, but with a fence its second mark finds the event already sent (lease gone).
    const seen = new Set<string>()
    return ids.filter((id) => {
      const repeated = seen.has(id)
      seen.add(id)
      return !applied.has(id) || (repeated && workerId !== undefined)
    })
  }

  async release(eventIds: readonly string[], options: ReleaseOptions): Promise<string[]> {
    const ids = this.validate.eventIds(eventIds)
    const { workerId } = this.validate.releaseOptions(options)
    this.#assertKeyRuns('release', 'claim without keyRun, so that there is nothing to release')
    if (ids.length === 0) return []
    const now = this.clock()
    const applied = new Set(
      await this.storage('release', () => this.releaseHeld(distinct(ids), workerId, now)),
    )
    // As markManyAsSent with a fence: a repeated id finds its claim already given back.
    const seen = new Set<string>()
    return ids.filter((id) => {
      const repeated = seen.has(id)
      seen.add(id)
      return !applied.has(id) || repeated
    })
  }

  /** A store without key runs refuses what needs them, rather than claim one event per key silently. */
  #assertKeyRuns(what: string, instead: string): void {
    if (this.keyRuns) return
    throw new ValidationError(
      this.adapter,
      `outbox: ${what} is not supported by this store (its capabilities do not declare keyRuns): ${instead}`,
    )
  }

  async getFailedEvents(limit?: number): Promise<OutboxEvent[]> {
    const max = this.validate.limit(limit)
    return this.storage('getFailedEvents', () => this.selectFailed(max))
  }

  async requeueFailed(eventIds: readonly string[]): Promise<number> {
    const ids = this.validate.eventIds(eventIds)
    if (ids.length === 0) return 0
    const now = this.clock()
    const { requeued, missing } = await this.storage('requeueFailed', () => this.requeue(distinct(ids), now))
    const notStored = new Set(missing)
    const first = ids.find((id) => notStored.has(id))
    if (first !== undefined) throw new EventNotFoundError(this.adapter, first)
    return requeued
  }

  async get(eventId: string): Promise<OutboxEvent | null> {
    const id = this.validate.eventId(eventId)
    return this.storage('get', () => this.read(id))
  }
}

/** The ids in first-occurrence order, each once. */
const distinct = (ids: readonly string[]): string[] => [...new Set(ids)]
