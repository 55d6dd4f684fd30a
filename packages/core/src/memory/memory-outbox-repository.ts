import { addMs, type Clock, cutoffDays, cutoffMinutes, systemClock } from '../clock.js'
import { outboxCounts } from '../counts.js'
import { EventNotFoundError, LeaseLostError } from '../errors.js'
import { assertEventFits, resolveMaxEventBytes } from '../nats-message.js'
import { newOutboxEvent } from '../new-event.js'
import type {
  ClaimOptions,
  EnqueueParams,
  FenceOptions,
  OutboxCounts,
  OutboxEvent,
  OutboxRepository,
  RenewLeaseOptions,
  RetryLaterOptions,
  WriteOptions,
} from '../outbox.js'
import { Validator } from '../validation.js'
import type { MemoryTransaction } from './memory-transaction.js'

const ADAPTER = 'memory'

interface StoredOutboxEvent extends OutboxEvent {
  /** Enqueue order within this repository: ties on `enqueuedAt` never reorder events. */
  seq: number
}

/** Options of {@link MemoryOutboxRepository}. */
export interface MemoryOutboxOptions {
  clock?: Clock
  /** The largest event, as NATS message bytes (payload + headers). Default 1,048,576 (NATS's `max_payload`). */
  maxEventBytes?: number | undefined
}

const copy = ({ seq: _seq, ...event }: StoredOutboxEvent): OutboxEvent => ({ ...event })

/**
 * The reference outbox: every operation is one synchronous step on a Map, so each is
 * atomic by construction. It passes the whole conformance suite and is the model the
 * database adapters are checked against. Not durable: for tests and examples.
 */
export class MemoryOutboxRepository implements OutboxRepository<MemoryTransaction> {
  protected readonly events = new Map<string, StoredOutboxEvent>()
  protected readonly clock: Clock
  protected readonly validate = new Validator(ADAPTER, 'outbox')
  /** The largest event accepted, as NATS message bytes (see `natsMessageBytes`). */
  readonly maxEventBytes: number
  #nextSeq = 1

  constructor(options: MemoryOutboxOptions = {}) {
    this.clock = options.clock ?? systemClock
    this.maxEventBytes = resolveMaxEventBytes(ADAPTER, options.maxEventBytes)
  }

  /** A raw view of the stored events, for tests that read around the repository (an oracle). */
  snapshot(): OutboxEvent[] {
    return [...this.events.values()].sort((a, b) => a.seq - b.seq).map(copy)
  }

  async findOrCreate(params: EnqueueParams, options?: WriteOptions<MemoryTransaction>): Promise<OutboxEvent> {
    const valid = this.validate.enqueueParams(params)
    assertEventFits(ADAPTER, valid, this.maxEventBytes)
    return this.insert(valid, this.clock(), options?.tx)
  }

  async findOrCreateMany(
    params: readonly EnqueueParams[],
    options?: WriteOptions<MemoryTransaction>,
  ): Promise<OutboxEvent[]> {
    const valid = this.validate.enqueueParamsList(params)
    for (const event of valid) assertEventFits(ADAPTER, event, this.maxEventBytes)
    const now = this.clock()
    const created = new Map<string, OutboxEvent>()
    return valid.map((event) => {
      const earlier = created.get(event.eventId)
      if (earlier) return { ...earlier }
      const result = this.insert(event, now, options?.tx)
      created.set(event.eventId, result)
      return result
    })
  }

  protected insert(params: EnqueueParams, now: Date, tx: MemoryTransaction | undefined): OutboxEvent {
    const stored = this.events.get(params.eventId)
    if (stored) return copy(stored)
    // The transaction's own uncommitted event wins over a second call with the same id.
    const staged = tx?.staged<OutboxEvent>(this).get(params.eventId)
    if (staged) return { ...staged }
    const event = newOutboxEvent(params, now)
    const write = () => {
      if (!this.events.has(event.eventId)) this.events.set(event.eventId, { ...event, seq: this.#nextSeq++ })
    }
    if (tx) {
      tx.staged<OutboxEvent>(this).set(event.eventId, event)
      tx.enlist(write)
    } else write()
    return { ...event }
  }

  protected require(eventId: string): StoredOutboxEvent {
    const event = this.events.get(eventId)
    if (!event) throw new EventNotFoundError(ADAPTER, eventId)
    return event
  }

  /** Throws `LeaseLostError` unless `workerId` (when given) holds the claim on `event`. */
  protected fence(event: StoredOutboxEvent, workerId: string | undefined): void {
    if (workerId !== undefined && (event.status !== 'publishing' || event.claimedBy !== workerId)) {
      throw new LeaseLostError(ADAPTER, event.eventId, workerId)
    }
  }

  protected clearLease(event: StoredOutboxEvent): void {
    delete event.claimedBy
    delete event.leaseUntil
  }

  async markAsPublishing(eventId: string): Promise<void> {
    const event = this.require(this.validate.eventId(eventId))
    event.status = 'publishing'
    event.claimedAt = this.clock()
  }

  async markAsSent(eventId: string, options?: FenceOptions): Promise<void> {
    const id = this.validate.eventId(eventId)
    const workerId = this.validate.fence(options)
    const event = this.require(id)
    this.fence(event, workerId)
    event.status = 'sent'
    event.sentAt = this.clock()
    this.clearLease(event)
  }

  async markAsFailed(eventId: string, errorMessage: string, options?: FenceOptions): Promise<void> {
    const id = this.validate.eventId(eventId)
    const message = this.validate.text(errorMessage, 'errorMessage')
    const workerId = this.validate.fence(options)
    const event = this.require(id)
    this.fence(event, workerId)
    event.status = 'failed'
    event.errorMessage = message
    event.retryCount += 1
    this.clearLease(event)
  }

  async findPending(options?: { limit?: number | undefined }): Promise<OutboxEvent[]> {
    const limit = this.validate.limitOption(options)
    const now = this.clock().getTime()
    return this.ordered()
      .filter((event) => event.status === 'pending' && event.availableAt.getTime() <= now)
      .slice(0, limit)
      .map(copy)
  }

  protected ordered(): StoredOutboxEvent[] {
    return [...this.events.values()].sort((a, b) => a.seq - b.seq)
  }

  async cleanup(olderThanDays: number): Promise<number> {
    const cutoff = cutoffDays(
      this.clock(),
      this.validate.nonNegative(olderThanDays, 'olderThanDays'),
    ).getTime()
    let deleted = 0
    for (const event of [...this.events.values()]) {
      if (event.status === 'sent' && event.sentAt && event.sentAt.getTime() < cutoff) {
        this.events.delete(event.eventId)
        deleted++
      }
    }
    return deleted
  }

  async resetStale(staleMinutes: number): Promise<number> {
    const cutoff = cutoffMinutes(
      this.clock(),
      this.validate.nonNegative(staleMinutes, 'staleMinutes'),
    ).getTime()
    let reset = 0
    for (const event of this.events.values()) {
      if (event.status === 'publishing' && event.claimedAt && event.claimedAt.getTime() < cutoff) {
        event.status = 'pending'
        this.clearLease(event)
        reset++
      }
    }
    return reset
  }

  async getCountByStatus(): Promise<OutboxCounts> {
    const counts = new Map<string, number>()
    for (const event of this.events.values()) counts.set(event.status, (counts.get(event.status) ?? 0) + 1)
    return outboxCounts(counts)
  }

  async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const { limit, leaseMs, workerId } = this.validate.claimOptions(options)
    const now = this.clock()
    const claimable = this.ordered().filter((event) => this.isClaimable(event, now.getTime()))
    return claimable.slice(0, limit).map((event) => {
      event.status = 'publishing'
      event.claimedAt = now
      event.claimedBy = workerId
      event.leaseUntil = addMs(now, leaseMs)
      return copy(event)
    })
  }

  protected isClaimable(event: StoredOutboxEvent, nowMs: number): boolean {
    if (event.status === 'pending') return event.availableAt.getTime() <= nowMs
    return (
      event.status === 'publishing' && event.leaseUntil !== undefined && event.leaseUntil.getTime() <= nowMs
    )
  }

  async renewLease(eventIds: readonly string[], options: RenewLeaseOptions): Promise<string[]> {
    const ids = this.validate.eventIds(eventIds)
    const { leaseMs, workerId } = this.validate.leaseOptions(options)
    const leaseUntil = addMs(this.clock(), leaseMs)
    return ids.filter((id) => {
      const event = this.events.get(id)
      if (event?.status !== 'publishing' || event.claimedBy !== workerId) return false
      event.leaseUntil = leaseUntil
      return true
    })
  }

  async markManyAsSent(eventIds: readonly string[], options?: FenceOptions): Promise<string[]> {
    const ids = this.validate.eventIds(eventIds)
    const workerId = this.validate.fence(options)
    const now = this.clock()
    return ids.filter((id) => {
      const event = this.events.get(id)
      if (!event) return true
      if (workerId !== undefined && (event.status !== 'publishing' || event.claimedBy !== workerId))
        return true
      event.status = 'sent'
      event.sentAt = now
      this.clearLease(event)
      return false
    })
  }

  async retryLater(eventId: string, options: RetryLaterOptions): Promise<void> {
    const id = this.validate.eventId(eventId)
    const { errorMessage, delayMs, workerId } = this.validate.retryLaterOptions(options)
    const event = this.require(id)
    this.fence(event, workerId)
    event.status = 'pending'
    event.retryCount += 1
    event.errorMessage = errorMessage
    event.availableAt = addMs(this.clock(), delayMs)
    this.clearLease(event)
  }

  async getFailedEvents(limit?: number): Promise<OutboxEvent[]> {
    const max = this.validate.limit(limit)
    return this.ordered()
      .filter((event) => event.status === 'failed')
      .slice(0, max)
      .map(copy)
  }

  async requeueFailed(eventIds: readonly string[]): Promise<number> {
    const ids = this.validate.eventIds(eventIds)
    const now = this.clock()
    let requeued = 0
    let missing: string | undefined
    for (const id of ids) {
      const event = this.events.get(id)
      if (!event) {
        missing ??= id
        continue
      }
      if (event.status !== 'failed') continue
      event.status = 'pending'
      event.availableAt = now
      event.retryCount = 0
      this.clearLease(event)
      requeued++
    }
    if (missing !== undefined) throw new EventNotFoundError(ADAPTER, missing)
    return requeued
  }

  async get(eventId: string): Promise<OutboxEvent | null> {
    const event = this.events.get(this.validate.eventId(eventId))
    return event ? copy(event) : null
  }
}
