import { type Clock, systemClock } from '../clock.js'
import { OutboxRepositoryKernel } from '../kernel/outbox-kernel.js'
import type {
  ClaimRequest,
  FencedOutcome,
  NewOutboxEventParams,
  OutboxChange,
  RequeueOutcome,
  StatusCountRows,
} from '../kernel/primitives.js'
import { resolveMaxEventBytes } from '../nats-message.js'
import { newOutboxEvent } from '../new-event.js'
import type { EnqueueParams, OutboxEvent } from '../outbox.js'
import type { AmbientTransactions } from '../transactions/ambient-transactions.js'
import { type MemoryTransaction, transactionsOf } from './memory-transaction.js'

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
  /** The store's `store.transaction` runner, whose open transaction `{ tx }`-less writes join. */
  ambient?: AmbientTransactions<MemoryTransaction> | undefined
  /** The store's identity: a {@link MemoryTransaction} another store opened is refused. Default: any is accepted. */
  identity?: object | undefined
}

const copy = ({ seq: _seq, ...event }: StoredOutboxEvent): OutboxEvent => ({ ...event })

/**
 * The reference outbox: the kernel's primitives, each one synchronous step on a Map, so
 * each is atomic by construction. It passes the whole conformance suite and is the model
 * the database adapters are checked against. Not durable: for tests and examples.
 */
export class MemoryOutboxRepository extends OutboxRepositoryKernel<MemoryTransaction> {
  protected readonly events = new Map<string, StoredOutboxEvent>()
  #nextSeq = 1
  /** The last `keySeq` given per ordering key; kept after `cleanup`, so a key's sequence never restarts. */
  readonly #lastKeySeq = new Map<string, number>()

  constructor(options: MemoryOutboxOptions = {}) {
    super({
      adapter: ADAPTER,
      clock: options.clock ?? systemClock,
      maxEventBytes: resolveMaxEventBytes(ADAPTER, options.maxEventBytes),
      ambient: options.ambient,
      transaction: transactionsOf(options.identity),
      orderingKeys: true,
      keyRuns: true,
    })
  }

  /** A raw view of the stored events, for tests that read around the repository (an oracle). */
  snapshot(): OutboxEvent[] {
    return this.ordered().map(copy)
  }

  protected async insertEvents(
    events: readonly NewOutboxEventParams[],
    now: Date,
    tx: MemoryTransaction | undefined,
  ): Promise<ReadonlyMap<string, OutboxEvent>> {
    return new Map(events.map((event) => [event.eventId, this.insert(event, now, tx)]))
  }

  /** One event's insert-if-absent; with `tx`, staged until the transaction commits. */
  protected insert(params: EnqueueParams, now: Date, tx: MemoryTransaction | undefined): OutboxEvent {
    const stored = this.events.get(params.eventId)
    if (stored) return copy(stored)
    // The transaction's own uncommitted event wins over a second call with the same id.
    const staged = tx?.staged<OutboxEvent>(this).get(params.eventId)
    if (staged) return { ...staged }
    const event = newOutboxEvent(params, now)
    // The enqueue position and the key's sequence are taken when the event becomes visible
    // (at commit for a transaction), so both follow commit order.
    const write = (): StoredOutboxEvent => {
      const existing = this.events.get(event.eventId)
      if (existing) return existing
      const stored: StoredOutboxEvent = { ...event, seq: this.#nextSeq++ }
      if (event.orderingKey !== undefined) stored.keySeq = this.#takeKeySeq(event.orderingKey)
      this.events.set(event.eventId, stored)
      return stored
    }
    if (!tx) return copy(write())
    tx.staged<OutboxEvent>(this).set(event.eventId, event)
    tx.enlist(write)
    return { ...event }
  }

  #takeKeySeq(orderingKey: string): number {
    const keySeq = (this.#lastKeySeq.get(orderingKey) ?? 0) + 1
    this.#lastKeySeq.set(orderingKey, keySeq)
    return keySeq
  }

  /** True when `workerId` (if given) holds the claim on `event`: the fence of every fenced write. */
  protected holdsClaim(event: StoredOutboxEvent, workerId: string | undefined): boolean {
    return workerId === undefined || (event.status === 'publishing' && event.claimedBy === workerId)
  }

  protected clearLease(event: StoredOutboxEvent): void {
    delete event.claimedBy
    delete event.leaseUntil
  }

  protected async setPublishing(eventId: string, now: Date): Promise<boolean> {
    const event = this.events.get(eventId)
    if (!event) return false
    event.status = 'publishing'
    event.claimedAt = now
    return true
  }

  protected async applyFenced(
    eventId: string,
    change: OutboxChange,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    const event = this.events.get(eventId)
    if (!event) return 'missing'
    if (!this.holdsClaim(event, workerId)) return 'lost'
    event.status = change.status
    if (change.status === 'sent') event.sentAt = change.sentAt
    else {
      event.errorMessage = change.errorMessage
      event.retryCount += 1
      if (change.status === 'pending') event.availableAt = change.availableAt
    }
    this.clearLease(event)
    return 'applied'
  }

  protected async selectPending(now: Date, limit: number): Promise<OutboxEvent[]> {
    return this.ordered()
      .filter((event) => event.status === 'pending' && event.availableAt.getTime() <= now.getTime())
      .slice(0, limit)
      .map(copy)
  }

  /** The stored events in enqueue order. */
  protected ordered(): StoredOutboxEvent[] {
    return [...this.events.values()].sort((a, b) => a.seq - b.seq)
  }

  protected async deleteSent(cutoff: Date, limit: number): Promise<number> {
    const expired = [...this.events.values()]
      .filter((event) => event.status === 'sent' && event.sentAt && event.sentAt.getTime() < cutoff.getTime())
      .slice(0, limit)
    for (const event of expired) this.events.delete(event.eventId)
    return expired.length
  }

  protected async resetPublishing(cutoff: Date, _now: Date, limit: number): Promise<number> {
    const stale = [...this.events.values()]
      .filter(
        (event) =>
          event.status === 'publishing' && event.claimedAt && event.claimedAt.getTime() < cutoff.getTime(),
      )
      .slice(0, limit)
    for (const event of stale) {
      event.status = 'pending'
      this.clearLease(event)
    }
    return stale.length
  }

  protected async countStatuses(): Promise<StatusCountRows> {
    const counts = new Map<string, number>()
    for (const event of this.events.values()) counts.set(event.status, (counts.get(event.status) ?? 0) + 1)
    return counts
  }

  protected async claimEvents({
    now,
    leaseUntil,
    workerId,
    limit,
    deadLettersBlockKeys,
    keyRun,
  }: ClaimRequest): Promise<OutboxEvent[]> {
    return this.claimable(now.getTime(), deadLettersBlockKeys, keyRun, limit).map((event) => {
      event.status = 'publishing'
      event.claimedAt = now
      event.claimedBy = workerId
      event.leaseUntil = leaseUntil
      return copy(event)
    })
  }

  /**
   * What a claim takes, in enqueue order: walking the claimable unkeyed events and heads of
   * keys in enqueue order, each head with its run (see {@link runsOfKeys}), until `limit`
   * events (a run counts every event; the last one taken may be cut). `include` narrows the
   * candidates (a test's broken claim): what it leaves out is not taken.
   */
  protected claimable(
    nowMs: number,
    deadLettersBlockKeys: boolean,
    keyRun: number,
    limit: number,
    include: (event: OutboxEvent) => boolean = () => true,
  ): StoredOutboxEvent[] {
    const heads = this.keyHeads(deadLettersBlockKeys)
    const runIds = this.runsOfKeys(heads, nowMs, keyRun)
    const ordered = this.ordered()
    const runs = new Map<string, StoredOutboxEvent[]>()
    for (const event of ordered) {
      if (event.orderingKey === undefined || !runIds.has(event.eventId) || !include(event)) continue
      const run = runs.get(event.orderingKey)
      if (run) run.push(event)
      else runs.set(event.orderingKey, [event])
    }
    const picked: StoredOutboxEvent[] = []
    for (const event of ordered) {
      if (picked.length >= limit) break
      if (event.orderingKey === undefined) {
        if (this.isClaimable(event, nowMs) && include(event)) picked.push(event)
        continue
      }
      if (heads.get(event.orderingKey) !== event.keySeq || !include(event)) continue
      for (const member of runs.get(event.orderingKey) ?? []) {
        if (picked.length >= limit) break
        picked.push(member)
      }
    }
    const taken = new Set(picked)
    return ordered.filter((event) => taken.has(event))
  }

  /**
   * The ids of the keyed events a claim may take: per key whose head is claimable, the head
   * and then the key's next unsent events in `keySeq` order while each is claimable, at most
   * `keyRun` of them. A run stops at the first event that is not claimable (not due, retried
   * into its backoff, a dead letter, publishing under a live lease); `sent` events are passed over.
   */
  protected runsOfKeys(heads: ReadonlyMap<string, number>, nowMs: number, keyRun: number): Set<string> {
    const byKey = new Map<string, StoredOutboxEvent[]>()
    for (const event of this.events.values()) {
      if (event.orderingKey === undefined || event.keySeq === undefined) continue
      const head = heads.get(event.orderingKey)
      if (head === undefined || event.keySeq < head || event.status === 'sent') continue
      const events = byKey.get(event.orderingKey)
      if (events) events.push(event)
      else byKey.set(event.orderingKey, [event])
    }
    const ids = new Set<string>()
    for (const events of byKey.values()) {
      events.sort((a, b) => (a.keySeq ?? 0) - (b.keySeq ?? 0))
      for (const event of events.slice(0, keyRun)) {
        if (!this.isClaimable(event, nowMs)) break
        ids.add(event.eventId)
      }
    }
    return ids
  }

  /**
   * Per ordering key, the `keySeq` of the one event of the key that may be claimed first: the
   * lowest event `publishing` if the key has one (claimable again only once its lease expires; with
   * `keyedDeadLetters: 'skip'` a dead letter redriven while a later event of its key publishes
   * has the lower `keySeq`, and still waits), else the lowest `keySeq` among its events that
   * hold the key: `pending`, and `failed` when dead letters block.
   */
  protected keyHeads(deadLettersBlockKeys: boolean): Map<string, number> {
    const heads = new Map<string, number>()
    const publishing = new Map<string, number>()
    for (const event of this.events.values()) {
      if (event.orderingKey === undefined || event.keySeq === undefined) continue
      // A key run leaves several events of a key publishing: the lowest is its head.
      const held = publishing.get(event.orderingKey)
      if (event.status === 'publishing' && (held === undefined || event.keySeq < held))
        publishing.set(event.orderingKey, event.keySeq)
      const holds = event.status === 'pending' || (event.status === 'failed' && deadLettersBlockKeys)
      if (!holds) continue
      const head = heads.get(event.orderingKey)
      if (head === undefined || event.keySeq < head) heads.set(event.orderingKey, event.keySeq)
    }
    for (const [orderingKey, keySeq] of publishing) heads.set(orderingKey, keySeq)
    return heads
  }

  /** `pending` and due, or `publishing` with an expired lease. */
  protected isClaimable(event: StoredOutboxEvent, nowMs: number): boolean {
    if (event.status === 'pending') return event.availableAt.getTime() <= nowMs
    return (
      event.status === 'publishing' && event.leaseUntil !== undefined && event.leaseUntil.getTime() <= nowMs
    )
  }

  protected async renewLeases(
    eventIds: readonly string[],
    workerId: string,
    leaseUntil: Date,
  ): Promise<string[]> {
    return eventIds.filter((id) => {
      const event = this.events.get(id)
      if (event?.status !== 'publishing' || !this.holdsClaim(event, workerId)) return false
      event.leaseUntil = leaseUntil
      return true
    })
  }

  protected async markSent(
    eventIds: readonly string[],
    workerId: string | undefined,
    now: Date,
  ): Promise<string[]> {
    return eventIds.filter((id) => {
      const event = this.events.get(id)
      if (!event || !this.holdsClaim(event, workerId)) return false
      event.status = 'sent'
      event.sentAt = now
      this.clearLease(event)
      return true
    })
  }

  protected override async releaseHeld(
    eventIds: readonly string[],
    workerId: string,
    _now: Date,
  ): Promise<string[]> {
    return eventIds.filter((id) => {
      const event = this.events.get(id)
      if (event?.status !== 'publishing' || !this.holdsClaim(event, workerId)) return false
      event.status = 'pending'
      this.clearLease(event)
      return true
    })
  }

  protected async requeue(eventIds: readonly string[], now: Date): Promise<RequeueOutcome> {
    let requeued = 0
    const missing: string[] = []
    for (const id of eventIds) {
      const event = this.events.get(id)
      if (!event) missing.push(id)
      else if (event.status === 'failed') {
        event.status = 'pending'
        event.availableAt = now
        event.retryCount = 0
        this.clearLease(event)
        requeued++
      }
    }
    return { requeued, missing }
  }

  protected async selectFailed(limit: number): Promise<OutboxEvent[]> {
    return this.ordered()
      .filter((event) => event.status === 'failed')
      .slice(0, limit)
      .map(copy)
  }

  protected async read(eventId: string): Promise<OutboxEvent | null> {
    const event = this.events.get(eventId)
    return event ? copy(event) : null
  }
}
