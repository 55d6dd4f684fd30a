import { type Clock, systemClock } from '../clock.js'
import type { InboxClaimResult, InboxEvent, InboxParams } from '../inbox.js'
import { InboxRepositoryKernel } from '../kernel/inbox-kernel.js'
import type { FencedOutcome, InboxClaimRequest, StatusCountRows } from '../kernel/primitives.js'
import { newInboxEvent } from '../new-event.js'
import type { AmbientTransactions } from '../transactions/ambient-transactions.js'
import { type MemoryTransaction, transactionsOf } from './memory-transaction.js'

const ADAPTER = 'memory'

interface StoredInboxEvent extends InboxEvent {
  seq: number
}

const copy = ({ seq: _seq, ...event }: StoredInboxEvent): InboxEvent => ({ ...event })

/** The reference inbox: the kernel's primitives, one synchronous step each, so each is atomic. */
export class MemoryInboxRepository extends InboxRepositoryKernel<MemoryTransaction> {
  protected readonly events = new Map<string, StoredInboxEvent>()
  #nextSeq = 1

  /** `identity`: the store's, as the outbox's options take it. */
  constructor(
    options: {
      clock?: Clock
      ambient?: AmbientTransactions<MemoryTransaction> | undefined
      identity?: object | undefined
    } = {},
  ) {
    super({
      adapter: ADAPTER,
      clock: options.clock ?? systemClock,
      ambient: options.ambient,
      transaction: transactionsOf(options.identity),
    })
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

  protected clearLease(event: StoredInboxEvent): void {
    delete event.claimedBy
    delete event.leaseUntil
  }

  protected async recordDelivery(params: InboxParams, now: Date): Promise<InboxEvent> {
    const stored = this.lookup(params)
    if (stored) {
      stored.deliveries += 1
      return copy(stored)
    }
    return copy(this.insert(params, now))
  }

  protected async claimDelivery({
    params,
    now,
    workerId,
    leaseUntil,
  }: InboxClaimRequest): Promise<InboxClaimResult> {
    const stored = this.lookup(params)
    const event = stored ?? this.insert(params, now)
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
    event.leaseUntil = leaseUntil
    delete event.errorMessage
    return { event: copy(event), shouldProcess: true }
  }

  /** The fence: `workerId` holds the claim while the event is `processing` and claimed by it. */
  protected holdsClaim(event: StoredInboxEvent, workerId: string | undefined): boolean {
    return workerId === undefined || (event.status === 'processing' && event.claimedBy === workerId)
  }

  protected async setProcessed(
    eventId: string,
    now: Date,
    tx: MemoryTransaction | undefined,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    const stored = this.events.get(eventId)
    if (!stored) return 'missing'
    if (!this.holdsClaim(stored, workerId)) return 'lost'
    // This store has no row lock to make a take-over wait for the caller's commit: a fenced
    // mark in a transaction pins the claim instead (as Redis does), extending a lease shorter
    // than its own length from now, so no other claim can take the message before the commit.
    if (tx && workerId !== undefined) this.#pin(stored, now)
    const write = () => {
      const event = this.events.get(eventId)
      // Checked again at commit: a claim lost anyway (a commit later than a whole lease)
      // keeps the other worker's row.
      if (!event || !this.holdsClaim(event, workerId)) return
      event.status = 'processed'
      event.processedAt = now
      this.clearLease(event)
    }
    if (tx) tx.enlist(write)
    else write()
    return 'applied'
  }

  #pin(event: StoredInboxEvent, now: Date): void {
    if (event.claimedAt === undefined || event.leaseUntil === undefined) return
    const pinned = now.getTime() + (event.leaseUntil.getTime() - event.claimedAt.getTime())
    if (event.leaseUntil.getTime() < pinned) event.leaseUntil = new Date(pinned)
  }

  protected async setFailed(
    eventId: string,
    errorMessage: string,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    const event = this.events.get(eventId)
    if (!event) return 'missing'
    if (!this.holdsClaim(event, workerId) || event.status === 'processed') return 'lost'
    event.status = 'failed'
    event.errorMessage = errorMessage
    this.clearLease(event)
    return 'applied'
  }

  protected async deleteProcessed(cutoff: Date, limit: number): Promise<number> {
    const expired = [...this.events.values()]
      .filter(
        (event) =>
          event.status === 'processed' && event.processedAt && event.processedAt.getTime() < cutoff.getTime(),
      )
      .slice(0, limit)
    for (const event of expired) this.events.delete(event.eventId)
    return expired.length
  }

  protected async failStale(cutoff: Date, errorMessage: string, limit: number): Promise<number> {
    const stale = [...this.events.values()]
      .filter(
        (event) =>
          event.status === 'processing' && (event.claimedAt ?? event.receivedAt).getTime() < cutoff.getTime(),
      )
      .slice(0, limit)
    for (const event of stale) {
      event.status = 'failed'
      event.errorMessage = errorMessage
      this.clearLease(event)
    }
    return stale.length
  }

  protected async countStatuses(): Promise<StatusCountRows> {
    const counts = new Map<string, number>()
    for (const event of this.events.values()) counts.set(event.status, (counts.get(event.status) ?? 0) + 1)
    return counts
  }

  protected async selectFailed(limit: number): Promise<InboxEvent[]> {
    return [...this.events.values()]
      .filter((event) => event.status === 'failed')
      .sort((a, b) => a.receivedAt.getTime() - b.receivedAt.getTime() || a.seq - b.seq)
      .slice(0, limit)
      .map(copy)
  }

  protected async read(eventId: string): Promise<InboxEvent | null> {
    const event = this.events.get(eventId)
    return event ? copy(event) : null
  }
}
