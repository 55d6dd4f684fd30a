import { addMs, type Clock, cutoffDays, cutoffMinutes, systemClock } from '../clock.js'
import { inboxCounts } from '../counts.js'
import { EventNotFoundError } from '../errors.js'
import {
  type InboxClaimOptions,
  type InboxClaimResult,
  type InboxCounts,
  type InboxEvent,
  type InboxParams,
  type InboxRepository,
  PROCESSING_TIMEOUT_MESSAGE,
} from '../inbox.js'
import { newInboxEvent } from '../new-event.js'
import { Validator } from '../validation.js'
import type { MemoryTransaction } from './memory-transaction.js'

const ADAPTER = 'memory'

interface StoredInboxEvent extends InboxEvent {
  seq: number
}

const copy = ({ seq: _seq, ...event }: StoredInboxEvent): InboxEvent => ({ ...event })

/** The reference inbox: one synchronous step per operation, so each is atomic. */
export class MemoryInboxRepository implements InboxRepository<MemoryTransaction> {
  protected readonly events = new Map<string, StoredInboxEvent>()
  protected readonly clock: Clock
  protected readonly validate = new Validator(ADAPTER, 'inbox')
  #nextSeq = 1

  constructor(options: { clock?: Clock } = {}) {
    this.clock = options.clock ?? systemClock
  }

  /** A raw view of the stored events, for tests that read around the repository. */
  snapshot(): InboxEvent[] {
    return [...this.events.values()].sort((a, b) => a.seq - b.seq).map(copy)
  }

  /**
   * The stored event for this delivery, by its id alone. `(stream, streamSeq)` never merges
   * two ids: a stream deleted and re-created under its name restarts at sequence 1, so a
   * stored position with a new id is a new event. A redelivery of a stored id keeps the
   * position recorded first.
   */
  protected lookup(params: InboxParams): StoredInboxEvent | undefined {
    return this.events.get(params.eventId)
  }

  protected insert(params: InboxParams, now: Date): StoredInboxEvent {
    const event: StoredInboxEvent = { ...newInboxEvent(params, now), seq: this.#nextSeq++ }
    this.events.set(event.eventId, event)
    return event
  }

  async findOrCreate(params: InboxParams): Promise<InboxEvent> {
    const valid = this.validate.inboxParams(params)
    const stored = this.lookup(valid)
    if (stored) {
      stored.deliveries += 1
      return copy(stored)
    }
    return copy(this.insert(valid, this.clock()))
  }

  async claim(params: InboxParams, options: InboxClaimOptions): Promise<InboxClaimResult> {
    const valid = this.validate.inboxParams(params)
    const { leaseMs, workerId } = this.validate.leaseOptions(options)
    const now = this.clock()
    const stored = this.lookup(valid)
    const event = stored ?? this.insert(valid, now)
    if (stored) {
      stored.deliveries += 1
      // A `processing` event without a lease came from the reference `findOrCreate` flow: its
      // handler may be running, so it stays taken until `resetStale` times it out.
      const leaseExpired =
        stored.status === 'processing' &&
        stored.leaseUntil !== undefined &&
        stored.leaseUntil.getTime() <= now.getTime()
      if (stored.status === 'processed' || (stored.status === 'processing' && !leaseExpired)) {
        return { event: copy(stored), shouldProcess: false }
      }
    }
    event.status = 'processing'
    event.claimedAt = now
    event.claimedBy = workerId
    event.leaseUntil = addMs(now, leaseMs)
    delete event.errorMessage
    return { event: copy(event), shouldProcess: true }
  }

  protected require(eventId: string): StoredInboxEvent {
    const event = this.events.get(eventId)
    if (!event) throw new EventNotFoundError(ADAPTER, eventId, 'inbox')
    return event
  }

  async markAsProcessed(eventId: string, options?: { tx?: MemoryTransaction | undefined }): Promise<void> {
    const id = this.validate.eventId(eventId)
    this.require(id)
    const now = this.clock()
    const write = () => {
      const event = this.events.get(id)
      if (!event) return
      event.status = 'processed'
      event.processedAt = now
      delete event.claimedBy
      delete event.leaseUntil
    }
    if (options?.tx) options.tx.enlist(write)
    else write()
  }

  async markAsFailed(eventId: string, errorMessage: string): Promise<void> {
    const id = this.validate.eventId(eventId)
    const message = this.validate.text(errorMessage, 'errorMessage')
    const event = this.require(id)
    event.status = 'failed'
    event.errorMessage = message
    delete event.claimedBy
    delete event.leaseUntil
  }

  async isProcessed(eventId: string): Promise<boolean> {
    return this.events.get(this.validate.eventId(eventId))?.status === 'processed'
  }

  async cleanup(olderThanDays: number): Promise<number> {
    const cutoff = cutoffDays(
      this.clock(),
      this.validate.nonNegative(olderThanDays, 'olderThanDays'),
    ).getTime()
    let deleted = 0
    for (const event of [...this.events.values()]) {
      if (event.status === 'processed' && event.processedAt && event.processedAt.getTime() < cutoff) {
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
      const claimTime = (event.claimedAt ?? event.receivedAt).getTime()
      if (event.status === 'processing' && claimTime < cutoff) {
        event.status = 'failed'
        event.errorMessage = PROCESSING_TIMEOUT_MESSAGE
        delete event.claimedBy
        delete event.leaseUntil
        reset++
      }
    }
    return reset
  }

  async getCountByStatus(): Promise<InboxCounts> {
    const counts = new Map<string, number>()
    for (const event of this.events.values()) counts.set(event.status, (counts.get(event.status) ?? 0) + 1)
    return inboxCounts(counts)
  }

  async getFailedEvents(limit?: number): Promise<InboxEvent[]> {
    const max = this.validate.limit(limit)
    return [...this.events.values()]
      .filter((event) => event.status === 'failed')
      .sort((a, b) => a.receivedAt.getTime() - b.receivedAt.getTime() || a.seq - b.seq)
      .slice(0, max)
      .map(copy)
  }

  async get(eventId: string): Promise<InboxEvent | null> {
    const event = this.events.get(this.validate.eventId(eventId))
    return event ? copy(event) : null
  }
}
