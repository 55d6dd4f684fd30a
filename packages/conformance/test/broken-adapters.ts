import {
  AmbientTransactions,
  addMs,
  type ClaimOptions,
  type ClaimRequest,
  cutoffDays,
  cutoffMinutes,
  type EnqueueParams,
  EventNotFoundError,
  type FencedOutcome,
  type FenceOptions,
  type InboxClaimOptions,
  type InboxClaimResult,
  type InboxCounts,
  type InboxEvent,
  type InboxFenceOptions,
  type InboxParams,
  type InboxProcessedOptions,
  LeaseLostError,
  MemoryInboxRepository,
  MemoryOutboxRepository,
  type MemoryTransaction,
  memoryTransactionDriver,
  type OutboxCounts,
  type OutboxEvent,
  PayloadTooLargeError,
  type RenewLeaseOptions,
  type RetryLaterOptions,
  Validator,
  type WriteOptions,
} from '@txbox/core'
import type { ConformanceTarget, Oracle } from '../src/index.js'
import { createMemoryTarget } from '../src/memory-target.js'

/**
 * Deliberately broken outboxes, each with one defect of the widely copied reference
 * implementations. They prove the suite can fail: each must fail exactly its named cases.
 */

/** What the broken repositories are built with: the fixture's clock and its `store.transaction`. */
interface RepositoryOptions {
  clock?: () => Date
  ambient?: AmbientTransactions<MemoryTransaction>
}

type OutboxClass = new (options: RepositoryOptions) => MemoryOutboxRepository
type InboxClass = new (options: RepositoryOptions) => MemoryInboxRepository

/**
 * A `store.transaction` for repositories built outside the memory store: they join it as the
 * store's own do, so only a case about their own defect can fail.
 */
const memoryAmbient = (): AmbientTransactions<MemoryTransaction> =>
  new AmbientTransactions({ adapter: 'memory', driver: memoryTransactionDriver })

/**
 * The memory target for a fixture whose repositories are replaced: built without the store's
 * identity, they take another store's transaction, so only the `foreign-handle-accepted`
 * fixture keeps `foreignTransaction` (the others would all fail its case besides their own).
 */
const memoryTargetForRepositories = (): ConformanceTarget<MemoryTransaction> => {
  const base = createMemoryTarget()
  return {
    ...base,
    async create(options) {
      const { foreignTransaction: _foreign, ...fixture } = await base.create(options)
      return fixture
    },
  }
}

const yieldToOthers = () => new Promise<void>((resolve) => setImmediate(resolve))

/** Check-then-insert with an await in between: concurrent callers each insert their own row. */
class CheckThenInsertOutbox extends MemoryOutboxRepository {
  override async findOrCreate(
    params: EnqueueParams,
    options?: WriteOptions<MemoryTransaction>,
  ): Promise<OutboxEvent> {
    const existing = await this.get(params.eventId)
    if (existing) return existing
    await yieldToOthers()
    this.events.delete(params.eventId)
    return super.findOrCreate(params, options)
  }
}

/**
 * The ordering-key rule of a claim (the head of a key and, with `keyRun`, its run), for the
 * fixtures that rewrite the claim to break something else: each keeps it, so it fails only
 * its own cases. `runs` are the ids of `runsOfKeys`.
 */
const headRule =
  (runs: ReadonlySet<string>) =>
  (event: OutboxEvent): boolean =>
    event.orderingKey === undefined || runs.has(event.eventId)

/** `claim` as `findPending` + `markAsPublishing`: two relays publish the same rows. */
class FindThenMarkClaimOutbox extends MemoryOutboxRepository {
  override async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const { limit, leaseMs, workerId, keyedDeadLetters } = this.validate.claimOptions(options)
    const keyRun = this.validate.keyRun(options.keyRun, limit)
    const now = this.clock()
    const candidates = this.claimable(now.getTime(), keyedDeadLetters === 'block', keyRun, limit)
    await yieldToOthers()
    return candidates.map((event) => {
      Object.assign(event, {
        status: 'publishing',
        claimedAt: now,
        claimedBy: workerId,
        leaseUntil: addMs(now, leaseMs),
      })
      const { seq: _seq, ...copy } = event
      return { ...copy }
    })
  }
}

/** `resetStale` keyed on `enqueuedAt`: resets events that are being published right now. */
class ResetByEnqueueTimeOutbox extends MemoryOutboxRepository {
  override async resetStale(staleMinutes: number): Promise<number> {
    const cutoff = cutoffMinutes(
      this.clock(),
      this.validate.nonNegative(staleMinutes, 'staleMinutes'),
    ).getTime()
    let reset = 0
    for (const event of this.events.values()) {
      if (event.status === 'publishing' && event.enqueuedAt.getTime() < cutoff) {
        event.status = 'pending'
        this.clearLease(event)
        reset++
      }
    }
    return reset
  }
}

/** FIFO by timestamp alone: ties (same millisecond) break by id, as a Redis sorted set would. */
class TimestampOnlyOrderOutbox extends MemoryOutboxRepository {
  protected override ordered() {
    return [...this.events.values()].sort(
      (a, b) => a.enqueuedAt.getTime() - b.enqueuedAt.getTime() || (a.eventId < b.eventId ? -1 : 1),
    )
  }
}

/**
 * The inbox that merged deliveries by `(stream, streamSeq)`: after a stream is re-created,
 * every new event at a reused sequence is taken for a duplicate and never handled.
 */
class StreamPositionMergingInbox extends MemoryInboxRepository {
  protected override lookup(params: InboxParams) {
    const byId = this.events.get(params.eventId)
    if (byId || params.stream === undefined) return byId
    return [...this.events.values()].find(
      (event) => event.stream === params.stream && event.streamSeq === params.streamSeq,
    )
  }
}

/**
 * The key a case-insensitive collation compares on the id column (as MySQL's `_ci`
 * collations do): case folds away, and uppercasing expands `ß` to `SS`. It leaves the
 * normal form alone, so NFC/NFD pairs stay apart and only the folded-ids cases catch it.
 */
const collationKey = (id: string): string => id.toUpperCase().toLowerCase()

/** An outbox whose unique id index folds ids: the second of two folded ids is silently dropped. */
class FoldingIdOutbox extends MemoryOutboxRepository {
  protected override insert(
    params: EnqueueParams,
    now: Date,
    tx: MemoryTransaction | undefined,
  ): OutboxEvent {
    const twin = [...this.events.values()].find(
      (event) => collationKey(event.eventId) === collationKey(params.eventId),
    )
    if (!twin) return super.insert(params, now, tx)
    const { seq: _seq, ...stored } = twin
    return { ...stored }
  }
}

/** An inbox whose id lookup folds ids the same way: a new event is taken for a duplicate. */
class FoldingIdInbox extends MemoryInboxRepository {
  protected override lookup(params: InboxParams) {
    return [...this.events.values()].find(
      (event) => collationKey(event.eventId) === collationKey(params.eventId),
    )
  }
}

/**
 * Writes that create the record they meant to update, as `HSET` on a missing Redis key or
 * an upsert does: renewing an unknown id leaves a status-less phantom behind (and still
 * reports it not renewed), and a processed mark inside a transaction upserts.
 */
class PhantomWriteOutbox extends MemoryOutboxRepository {
  override async renewLease(eventIds: readonly string[], options: RenewLeaseOptions): Promise<string[]> {
    const renewed = await super.renewLease(eventIds, options)
    for (const id of eventIds) {
      if (!this.events.has(id)) {
        const phantom = { eventId: id, leaseUntil: addMs(this.clock(), options.leaseMs), seq: 0 }
        this.events.set(id, phantom as unknown as Parameters<typeof this.events.set>[1])
      }
    }
    return renewed
  }
}

class PhantomWriteInbox extends MemoryInboxRepository {
  override async markAsProcessed(
    eventId: string,
    options?: InboxProcessedOptions<MemoryTransaction>,
  ): Promise<void> {
    const tx = options?.tx
    if (!tx || this.events.has(eventId)) return super.markAsProcessed(eventId, options)
    const now = this.clock()
    tx.enlist(() => {
      const phantom = { eventId, status: 'processed', processedAt: now, seq: 0 }
      this.events.set(eventId, phantom as unknown as Parameters<typeof this.events.set>[1])
    })
  }
}

/**
 * `INTERVAL ? DAY` / `INTERVAL ? MINUTE` as MySQL reads a fractional argument: the fraction
 * is dropped, so cleanup(0.5) means 0 days and resetStale(1.5) means 1 minute.
 */
const wholeUnits = (value: number): number =>
  typeof value === 'number' && value > 0 ? Math.trunc(value) : value

class WholeUnitCutoffOutbox extends MemoryOutboxRepository {
  override cleanup(olderThanDays: number): Promise<number> {
    return super.cleanup(wholeUnits(olderThanDays))
  }

  override resetStale(staleMinutes: number): Promise<number> {
    return super.resetStale(wholeUnits(staleMinutes))
  }
}

class WholeUnitCutoffInbox extends MemoryInboxRepository {
  override cleanup(olderThanDays: number): Promise<number> {
    return super.cleanup(wholeUnits(olderThanDays))
  }

  override resetStale(staleMinutes: number): Promise<number> {
    return super.resetStale(wholeUnits(staleMinutes))
  }
}

/**
 * A reclaim that keeps the first claim's `claimedAt` (as a claim index keyed by the first
 * claim time, never re-scored): resetStale then resets the new holder's live claim.
 */
class FirstClaimTimeOutbox extends MemoryOutboxRepository {
  override async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const firstClaims = new Map<string, Date>()
    for (const event of this.events.values()) {
      if (event.status === 'publishing' && event.claimedAt) firstClaims.set(event.eventId, event.claimedAt)
    }
    const claimed = await super.claim(options)
    for (const event of claimed) {
      const first = firstClaims.get(event.eventId)
      const stored = this.events.get(event.eventId)
      if (first && stored) stored.claimedAt = first
    }
    return claimed
  }
}

/** What a row mapper that turns every NULL column into `null` returns for an unset field. */
const withNulls = <T extends object>(event: T | null, fields: readonly string[]): T | null => {
  if (!event) return event
  const row = { ...event } as Record<string, unknown>
  for (const field of fields) row[field] ??= null
  return row as T
}

/** `get` maps unset columns to null instead of leaving them out. */
class NullColumnsOutbox extends MemoryOutboxRepository {
  override async get(eventId: string): Promise<OutboxEvent | null> {
    const fields = ['headers', 'sentAt', 'errorMessage', 'claimedAt', 'claimedBy', 'leaseUntil']
    return withNulls(await super.get(eventId), fields)
  }
}

class NullColumnsInbox extends MemoryInboxRepository {
  override async get(eventId: string): Promise<InboxEvent | null> {
    const fields = [
      'headers',
      'stream',
      'streamSeq',
      'processedAt',
      'errorMessage',
      'claimedAt',
      'claimedBy',
      'leaseUntil',
    ]
    return withNulls(await super.get(eventId), fields)
  }
}

/**
 * FIFO by `enqueuedAt`, ties in physical row order, where every update writes a new row
 * version at the end of the heap (as PostgreSQL's MVCC does): `ORDER BY enqueued_at` alone.
 */
class PhysicalOrderOutbox extends MemoryOutboxRepository {
  protected override ordered() {
    return [...this.events.values()].sort((a, b) => a.enqueuedAt.getTime() - b.enqueuedAt.getTime())
  }

  #rewrite(ids: readonly string[]): void {
    for (const id of ids) {
      const row = this.events.get(id)
      if (!row) continue
      this.events.delete(id)
      this.events.set(id, row)
    }
  }

  override async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const claimed = await super.claim(options)
    this.#rewrite(claimed.map((event) => event.eventId))
    return claimed
  }

  override async retryLater(eventId: string, options: RetryLaterOptions): Promise<void> {
    await super.retryLater(eventId, options)
    this.#rewrite([eventId])
  }

  override async markAsFailed(eventId: string, errorMessage: string, options?: FenceOptions): Promise<void> {
    await super.markAsFailed(eventId, errorMessage, options)
    this.#rewrite([eventId])
  }

  override async requeueFailed(eventIds: readonly string[]): Promise<number> {
    const requeued = await super.requeueFailed(eventIds)
    this.#rewrite(eventIds)
    return requeued
  }
}

/**
 * An order index that outlives the row (a sorted-set member cleanup forgets to remove, then
 * `ZADD NX`): an id enqueued again after cleanup keeps its first life's place at the front.
 */
class StaleOrderIndexOutbox extends MemoryOutboxRepository {
  readonly #firstSeq = new Map<string, number>()

  protected override insert(
    params: EnqueueParams,
    now: Date,
    tx: MemoryTransaction | undefined,
  ): OutboxEvent {
    const event = super.insert(params, now, tx)
    const row = this.events.get(params.eventId)
    if (row) {
      const first = this.#firstSeq.get(params.eventId)
      if (first === undefined) this.#firstSeq.set(params.eventId, row.seq)
      else row.seq = first
    }
    return event
  }
}

/** The page a store that never follows its cursor stops after. */
const ONE_PAGE = 1_000

/** Caps a count at one page, as a `Select COUNT` that ignores `LastEvaluatedKey` does. */
const onePageCounts = <T extends object>(counts: T): T =>
  Object.fromEntries(
    Object.entries(counts).map(([status, count]) => [status, Math.min(count, ONE_PAGE)]),
  ) as T

/** Every query reads one page and stops: claim, findPending, resetStale, cleanup and counts. */
class OnePageOutbox extends MemoryOutboxRepository {
  // Claims everything it was asked for but returns one page: the rest is held and never published.
  override async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    return (await super.claim(options)).slice(0, ONE_PAGE)
  }

  override async findPending(options?: { limit?: number | undefined }): Promise<OutboxEvent[]> {
    return (await super.findPending(options)).slice(0, ONE_PAGE)
  }

  override async resetStale(staleMinutes: number): Promise<number> {
    const cutoff = cutoffMinutes(this.clock(), this.validate.nonNegative(staleMinutes, 'staleMinutes'))
    const page = this.ordered()
      .filter(
        (event) => event.status === 'publishing' && (event.claimedAt?.getTime() ?? 0) < cutoff.getTime(),
      )
      .slice(0, ONE_PAGE)
    for (const event of page) {
      event.status = 'pending'
      this.clearLease(event)
    }
    return page.length
  }

  override async cleanup(olderThanDays: number): Promise<number> {
    const cutoff = cutoffDays(this.clock(), this.validate.nonNegative(olderThanDays, 'olderThanDays'))
    const page = this.ordered()
      .filter((event) => event.status === 'sent' && (event.sentAt?.getTime() ?? 0) < cutoff.getTime())
      .slice(0, ONE_PAGE)
    for (const event of page) this.events.delete(event.eventId)
    return page.length
  }

  override async getCountByStatus(): Promise<OutboxCounts> {
    return onePageCounts(await super.getCountByStatus())
  }
}

class OnePageInbox extends MemoryInboxRepository {
  override async resetStale(staleMinutes: number): Promise<number> {
    const cutoff = cutoffMinutes(this.clock(), this.validate.nonNegative(staleMinutes, 'staleMinutes'))
    const page = [...this.events.values()]
      .filter(
        (event) =>
          event.status === 'processing' && (event.claimedAt ?? event.receivedAt).getTime() < cutoff.getTime(),
      )
      .slice(0, ONE_PAGE)
    for (const event of page) {
      event.status = 'failed'
      event.errorMessage = 'Processing timeout'
      delete event.claimedBy
      delete event.leaseUntil
    }
    return page.length
  }

  override async cleanup(olderThanDays: number): Promise<number> {
    const cutoff = cutoffDays(this.clock(), this.validate.nonNegative(olderThanDays, 'olderThanDays'))
    const page = [...this.events.values()]
      .filter(
        (event) => event.status === 'processed' && (event.processedAt?.getTime() ?? 0) < cutoff.getTime(),
      )
      .slice(0, ONE_PAGE)
    for (const event of page) this.events.delete(event.eventId)
    return page.length
  }

  override async getFailedEvents(limit?: number): Promise<InboxEvent[]> {
    return (await super.getFailedEvents(limit)).slice(0, ONE_PAGE)
  }

  override async getCountByStatus(): Promise<InboxCounts> {
    return onePageCounts(await super.getCountByStatus())
  }
}

/** Serializes the calls made through one instance, as an in-process mutex does; other instances do not wait. */
class InstanceLock {
  #tail: Promise<unknown> = Promise.resolve()

  run<T>(critical: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(critical)
    this.#tail = result.catch(() => {})
    return result
  }
}

/**
 * Claims made atomic by a lock in the process (a mutex around find-then-mark), not by the
 * database: disjoint within one instance, not across two instances on the same data.
 */
class InstanceLockedClaimOutbox extends FindThenMarkClaimOutbox {
  readonly lock = new InstanceLock()

  override claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    return this.claimUnder(this.lock, options)
  }

  claimUnder(lock: InstanceLock, options: ClaimOptions): Promise<OutboxEvent[]> {
    return lock.run(() => super.claim(options))
  }
}

/** The inbox twin: check for the id, then insert it as new, under an instance's own lock. */
class InstanceLockedClaimInbox extends MemoryInboxRepository {
  readonly lock = new InstanceLock()

  override claim(params: InboxParams, options: InboxClaimOptions): Promise<InboxClaimResult> {
    return this.claimUnder(this.lock, params, options)
  }

  claimUnder(lock: InstanceLock, params: InboxParams, options: InboxClaimOptions): Promise<InboxClaimResult> {
    return lock.run(async () => {
      const known = this.events.has(params.eventId)
      await yieldToOthers()
      // The act trusts the check: what another instance stored meanwhile is stored again as new.
      if (!known) this.events.delete(params.eventId)
      return super.claim(params, options)
    })
  }
}

/** `repository` with its `claim` replaced: a second instance over the same data. */
const withClaim = <T extends object>(repository: T, claim: unknown): T =>
  new Proxy(repository, {
    get: (target, property) => {
      if (property === 'claim') return claim
      const value: unknown = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })

/** An oracle that reads the broken repositories' own stored rows (bypassing their read logic). */
const snapshotOracle = (outbox: MemoryOutboxRepository, inbox: MemoryInboxRepository): Oracle => ({
  outbox: async (eventId) => outbox.snapshot().find((event) => event.eventId === eventId) ?? null,
  outboxCount: async () => outbox.snapshot().length,
  inbox: async (eventId) => inbox.snapshot().find((event) => event.eventId === eventId) ?? null,
  inboxCount: async () => inbox.snapshot().length,
})

/** The memory target with instance-locked claims, whose peer is a second instance with its own lock. */
const instanceLockedTarget = (): ConformanceTarget<MemoryTransaction> => {
  const base = memoryTargetForRepositories()
  return {
    ...base,
    name: 'instance-locked-claims',
    async create(options) {
      const fixture = await base.create(options)
      const ambient = memoryAmbient()
      const outbox = new InstanceLockedClaimOutbox({ clock: options.clock, ambient })
      const inbox = new InstanceLockedClaimInbox({ clock: options.clock, ambient })
      return {
        ...fixture,
        outbox,
        inbox,
        storeTransaction: (fn, transactionOptions) => ambient.run(fn, transactionOptions),
        oracle: snapshotOracle(outbox, inbox),
        async peer() {
          const lock = new InstanceLock()
          return {
            outbox: withClaim(outbox, (claim: ClaimOptions) => outbox.claimUnder(lock, claim)),
            inbox: withClaim(inbox, (params: InboxParams, claim: InboxClaimOptions) =>
              inbox.claimUnder(lock, params, claim),
            ),
            dispose: async () => {},
          }
        },
      }
    },
  }
}

/** An outbox row without the repository's private enqueue sequence. */
const withoutSeq = <T extends { seq: number }>({ seq: _seq, ...event }: T): Omit<T, 'seq'> => ({ ...event })

/**
 * A lease record kept beside the event (a Redis lease key that nothing deletes on release):
 * fenced writes check it alone, so the worker that last claimed an event may still fail,
 * retry, renew or bulk-mark it after it was sent, failed, requeued or reset.
 */
class LeaseRecordFenceOutbox extends MemoryOutboxRepository {
  readonly #holders = new Map<string, string>()

  override async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const claimed = await super.claim(options)
    for (const event of claimed) this.#holders.set(event.eventId, options.workerId)
    return claimed
  }

  protected override holdsClaim(event: OutboxEvent, workerId: string | undefined): boolean {
    return workerId === undefined || this.#holders.get(event.eventId) === workerId
  }

  // markAsSent keeps the status check, so only the other fenced writes carry the defect.
  override async markAsSent(eventId: string, options?: FenceOptions): Promise<void> {
    const workerId = this.validate.fence(options)
    const event = this.events.get(this.validate.eventId(eventId))
    if (workerId !== undefined && event && event.status !== 'publishing')
      throw new LeaseLostError('memory', eventId, workerId)
    return super.markAsSent(eventId, options)
  }

  override async renewLease(eventIds: readonly string[], options: RenewLeaseOptions): Promise<string[]> {
    const ids = this.validate.eventIds(eventIds)
    const { leaseMs, workerId } = this.validate.leaseOptions(options)
    const leaseUntil = addMs(this.clock(), leaseMs)
    return ids.filter((id) => {
      const event = this.events.get(id)
      if (!event || this.#holders.get(id) !== workerId) return false
      event.leaseUntil = leaseUntil
      return true
    })
  }

  override async markManyAsSent(eventIds: readonly string[], options?: FenceOptions): Promise<string[]> {
    const ids = this.validate.eventIds(eventIds)
    const workerId = this.validate.fence(options)
    const now = this.clock()
    return ids.filter((id) => {
      const event = this.events.get(id)
      if (!event) return true
      if (workerId !== undefined && this.#holders.get(id) !== workerId) return true
      Object.assign(event, { status: 'sent', sentAt: now })
      this.clearLease(event)
      return false
    })
  }
}

/**
 * Reads that filter on the wrong thing: findPending as claim's filter (due pending events and
 * expired leases), and cleanup keyed on `sentAt` alone (`WHERE sent_at < ?`).
 */
class StatusBlindOutbox extends MemoryOutboxRepository {
  override async findPending(options?: { limit?: number | undefined }): Promise<OutboxEvent[]> {
    const limit = this.validate.limitOption(options)
    const now = this.clock().getTime()
    return this.ordered()
      .filter((event) => this.isClaimable(event, now))
      .slice(0, limit)
      .map(withoutSeq)
  }

  override async cleanup(olderThanDays: number): Promise<number> {
    const cutoff = cutoffDays(this.clock(), this.validate.nonNegative(olderThanDays, 'olderThanDays'))
    let deleted = 0
    for (const event of [...this.events.values()]) {
      if (event.sentAt && event.sentAt.getTime() < cutoff.getTime()) {
        this.events.delete(event.eventId)
        deleted++
      }
    }
    return deleted
  }
}

/**
 * A dead-letter index (a Redis set, a sparse GSI) that failures add to and nothing prunes:
 * an event that left `failed` is still listed.
 */
class UnprunedFailedIndexOutbox extends MemoryOutboxRepository {
  readonly #failed = new Set<string>()

  override async markAsFailed(eventId: string, errorMessage: string, options?: FenceOptions): Promise<void> {
    await super.markAsFailed(eventId, errorMessage, options)
    this.#failed.add(eventId)
  }

  override async getFailedEvents(limit?: number): Promise<OutboxEvent[]> {
    const max = this.validate.limit(limit)
    return this.ordered()
      .filter((event) => this.#failed.has(event.eventId))
      .slice(0, max)
      .map(withoutSeq)
  }
}

class UnprunedFailedIndexInbox extends MemoryInboxRepository {
  readonly #failed = new Set<string>()

  override async markAsFailed(
    eventId: string,
    errorMessage: string,
    options?: InboxFenceOptions,
  ): Promise<void> {
    await super.markAsFailed(eventId, errorMessage, options)
    // Indexed when it became failed (a processed message stays processed: nothing to index).
    if (this.events.get(eventId)?.status === 'failed') this.#failed.add(eventId)
  }

  override async resetStale(staleMinutes: number): Promise<number> {
    const reset = await super.resetStale(staleMinutes)
    for (const event of this.events.values()) if (event.status === 'failed') this.#failed.add(event.eventId)
    return reset
  }

  override async getFailedEvents(limit?: number): Promise<InboxEvent[]> {
    const max = this.validate.limit(limit)
    return [...this.events.values()]
      .filter((event) => this.#failed.has(event.eventId))
      .sort((a, b) => a.receivedAt.getTime() - b.receivedAt.getTime() || a.seq - b.seq)
      .slice(0, max)
      .map(withoutSeq)
  }
}

/**
 * An empty id list drops the `WHERE id IN (...)` filter instead of matching nothing: bulk
 * writes then apply to every event the worker holds, or every dead letter.
 */
class EmptyMeansAllOutbox extends MemoryOutboxRepository {
  #allIf(eventIds: readonly string[], status: OutboxEvent['status']): readonly string[] {
    if (eventIds.length > 0) return eventIds
    return [...this.events.values()].filter((event) => event.status === status).map((event) => event.eventId)
  }

  override markManyAsSent(eventIds: readonly string[], options?: FenceOptions): Promise<string[]> {
    return super.markManyAsSent(this.#allIf(eventIds, 'publishing'), options)
  }

  override renewLease(eventIds: readonly string[], options: RenewLeaseOptions): Promise<string[]> {
    return super.renewLease(this.#allIf(eventIds, 'publishing'), options)
  }

  override requeueFailed(eventIds: readonly string[]): Promise<number> {
    return super.requeueFailed(this.#allIf(eventIds, 'failed'))
  }
}

/**
 * Inside a transaction each occurrence of an id in a batch is its own upsert (`ON CONFLICT DO
 * UPDATE`, a second `Put`): the last one wins the row and each returns its own payload.
 */
class LastWriteWinsInTxOutbox extends MemoryOutboxRepository {
  override async findOrCreateMany(
    params: readonly EnqueueParams[],
    options?: WriteOptions<MemoryTransaction>,
  ): Promise<OutboxEvent[]> {
    const tx = options?.tx
    if (!tx) return super.findOrCreateMany(params, options)
    const valid = this.validate.enqueueParamsList(params)
    const now = this.clock()
    return valid.map((event) => {
      const result = this.insert(event, now, tx)
      tx.enlist(() => {
        const row = this.events.get(event.eventId)
        if (row) Object.assign(row, { subject: event.subject, payload: event.payload })
      })
      return { ...result, subject: event.subject, payload: event.payload }
    })
  }
}

/**
 * A queued-write transaction (Redis MULTI, a buffered memory transaction) that answers each
 * enqueue from its own arguments: a second enqueue of one id in the transaction returns an
 * event that is not the one stored at commit.
 */
class OwnArgumentsInTxOutbox extends MemoryOutboxRepository {
  override async findOrCreate(
    params: EnqueueParams,
    options?: WriteOptions<MemoryTransaction>,
  ): Promise<OutboxEvent> {
    const result = await super.findOrCreate(params, options)
    if (!options?.tx || this.events.has(params.eventId)) return result
    const { headers, ...rest } = result
    return {
      ...rest,
      subject: params.subject,
      payload: params.payload,
      ...(params.headers === undefined ? {} : { headers: params.headers }),
    }
  }
}

/** Reads that drop a stored column the row mapper forgot: `get` loses `sentAt` / `processedAt`. */
class ForgetfulGetOutbox extends MemoryOutboxRepository {
  override async get(eventId: string): Promise<OutboxEvent | null> {
    const event = await super.get(eventId)
    if (event) delete event.sentAt
    return event
  }
}

class ForgetfulGetInbox extends MemoryInboxRepository {
  override async get(eventId: string): Promise<InboxEvent | null> {
    const event = await super.get(eventId)
    if (event) delete event.processedAt
    return event
  }
}

/** The memory target with both repositories replaced by broken ones. */
const brokenPairTarget = (
  name: string,
  Outbox: OutboxClass,
  Inbox: InboxClass,
): ConformanceTarget<MemoryTransaction> => {
  const base = memoryTargetForRepositories()
  return {
    ...base,
    name,
    async create(options) {
      const fixture = await base.create(options)
      const ambient = memoryAmbient()
      const outbox = new Outbox({ clock: options.clock, ambient })
      const inbox = new Inbox({ clock: options.clock, ambient })
      return {
        ...fixture,
        outbox,
        inbox,
        storeTransaction: (fn, transactionOptions) => ambient.run(fn, transactionOptions),
        oracle: snapshotOracle(outbox, inbox),
      }
    },
  }
}

/** The memory target with its inbox replaced by a broken one. */
const brokenInboxTarget = (name: string, Inbox: InboxClass): ConformanceTarget<MemoryTransaction> =>
  brokenPairTarget(name, MemoryOutboxRepository, Inbox)

/**
 * The validation before NATS-safe ids: any well-formed id and any whitespace-free subject
 * is accepted, so `o-1 ` is stored beside `o-1` and later published as the same message.
 */
class PreNatsRuleValidator extends Validator {
  override newEventId(value: unknown, name = 'eventId'): string {
    return this.eventId(value, name)
  }

  override subject(value: unknown): string {
    // Only the token rules are missing: length, whitespace and surrogates are still checked.
    if (typeof value !== 'string') return super.subject(value)
    super.subject(value.replace(/[.*>]/g, '_'))
    return value
  }
}

class NatsUnsafeIdOutbox extends MemoryOutboxRepository {
  protected override readonly validate = new PreNatsRuleValidator('memory', 'outbox')
}

class NatsUnsafeIdInbox extends MemoryInboxRepository {
  protected override readonly validate = new PreNatsRuleValidator('memory', 'inbox')
}

/** Measures only the payload, as a store that ignores the NATS header block would. */
class PayloadOnlySizeOutbox extends MemoryOutboxRepository {
  #check(events: readonly EnqueueParams[]): void {
    for (const event of events) {
      const bytes = Buffer.byteLength(event.payload, 'utf8')
      if (bytes > this.maxEventBytes)
        throw new PayloadTooLargeError('memory', event.eventId, bytes, this.maxEventBytes)
    }
  }

  override async findOrCreate(
    params: EnqueueParams,
    options?: WriteOptions<MemoryTransaction>,
  ): Promise<OutboxEvent> {
    const valid = this.validate.enqueueParams(params)
    this.#check([valid])
    return this.insert(valid, this.clock(), options?.tx)
  }

  override async findOrCreateMany(
    params: readonly EnqueueParams[],
    options?: WriteOptions<MemoryTransaction>,
  ): Promise<OutboxEvent[]> {
    const valid = this.validate.enqueueParamsList(params)
    this.#check(valid)
    const now = this.clock()
    const created = new Map<string, OutboxEvent>()
    return valid.map((event) => {
      const result = created.get(event.eventId) ?? this.insert(event, now, options?.tx)
      created.set(event.eventId, result)
      return { ...result }
    })
  }
}

/**
 * Messages that name the field but not the side, as one validator shared by both
 * repositories writes them: `eventId must be ...` does not say whether the outbox or the
 * inbox refused it.
 */
class SidelessMessagesOutbox extends MemoryOutboxRepository {
  protected override readonly validate = new Validator('memory')
}

class SidelessMessagesInbox extends MemoryInboxRepository {
  protected override readonly validate = new Validator('memory')
}

/**
 * Failed messages received at one instant listed by id (`ORDER BY received_at, event_id`):
 * right whenever the clock moved between deliveries, wrong for a burst at one instant.
 */
class IdTieBreakFailedInbox extends MemoryInboxRepository {
  protected override async selectFailed(limit: number): Promise<InboxEvent[]> {
    return [...this.events.values()]
      .filter((event) => event.status === 'failed')
      .sort(
        (a, b) =>
          a.receivedAt.getTime() - b.receivedAt.getTime() ||
          (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0),
      )
      .slice(0, limit)
      .map(({ seq: _seq, ...event }) => ({ ...event }))
  }
}

/**
 * The inbox before fenced marks: `markAsProcessed` ignores the worker, so a worker whose
 * message was taken over and processed by another marks it again (and, with `{ tx }`, commits
 * its handler's writes a second time).
 */
class UnfencedProcessedInbox extends MemoryInboxRepository {
  protected override setProcessed(
    eventId: string,
    now: Date,
    tx: MemoryTransaction | undefined,
  ): Promise<FencedOutcome> {
    return super.setProcessed(eventId, now, tx, undefined)
  }
}

/** The fence checked without `{ tx }` only: inside a transaction the late worker's mark goes through. */
class UnfencedInTransactionInbox extends MemoryInboxRepository {
  protected override setProcessed(
    eventId: string,
    now: Date,
    tx: MemoryTransaction | undefined,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    return super.setProcessed(eventId, now, tx, tx === undefined ? workerId : undefined)
  }
}

/**
 * The inbox before fenced marks: `markAsFailed` ignores the worker and the status, so a late
 * failure overwrites another worker's `processed` and the next delivery runs the handler again.
 */
class UnfencedFailedInbox extends MemoryInboxRepository {
  protected override async setFailed(eventId: string, errorMessage: string): Promise<FencedOutcome> {
    const event = this.events.get(eventId)
    if (!event) return 'missing'
    event.status = 'failed'
    event.errorMessage = errorMessage
    this.clearLease(event)
    return 'applied'
  }
}

/** A fence that also requires a live lease: the holder of an expired lease nobody took over is refused. */
class LiveLeaseFencedInbox extends MemoryInboxRepository {
  protected override holdsClaim(event: InboxEvent & { seq: number }, workerId: string | undefined): boolean {
    if (workerId === undefined) return true
    const live = event.leaseUntil !== undefined && event.leaseUntil.getTime() > this.clock().getTime()
    return super.holdsClaim(event, workerId) && live
  }
}

/**
 * Cleanup deletes the row but keeps the id's dedupe record (its delivery count), as a store
 * with a separate dedupe key or table that cleanup forgets would: a message received again
 * after cleanup continues the old count instead of starting a new message.
 */
class DedupeRecordKeepingInbox extends MemoryInboxRepository {
  readonly #deliveriesOfDeleted = new Map<string, number>()

  override async cleanup(olderThanDays: number): Promise<number> {
    const before = new Map([...this.events].map(([id, event]) => [id, event.deliveries]))
    const deleted = await super.cleanup(olderThanDays)
    for (const [id, deliveries] of before)
      if (!this.events.has(id)) this.#deliveriesOfDeleted.set(id, deliveries)
    return deleted
  }

  protected override insert(params: InboxParams, now: Date) {
    const event = super.insert(params, now)
    event.deliveries += this.#deliveriesOfDeleted.get(params.eventId) ?? 0
    return event
  }
}

/**
 * A claim that applies its limit to the due pending events only and adds every expired lease
 * on top, as a script that gathers both kinds of candidates and then bounds only the first:
 * a relay asking for 100 may get thousands after an outage.
 */
class ExpiredBeyondLimitOutbox extends MemoryOutboxRepository {
  protected override async claimEvents(request: ClaimRequest): Promise<OutboxEvent[]> {
    const nowMs = request.now.getTime()
    const isHead = headRule(
      this.runsOfKeys(this.keyHeads(request.deadLettersBlockKeys), nowMs, request.keyRun),
    )
    const expired = this.ordered().filter(
      (event) =>
        event.status === 'publishing' &&
        event.leaseUntil !== undefined &&
        event.leaseUntil.getTime() <= nowMs &&
        isHead(event),
    )
    const pending = this.claimable(
      nowMs,
      request.deadLettersBlockKeys,
      request.keyRun,
      request.limit,
      (event) => event.status === 'pending',
    )
    return [...expired, ...pending]
      .sort((a, b) => a.seq - b.seq)
      .map((event) => {
        Object.assign(event, {
          status: 'publishing',
          claimedAt: request.now,
          claimedBy: request.workerId,
          leaseUntil: request.leaseUntil,
        })
        const { seq: _seq, ...copy } = event
        return { ...copy }
      })
  }
}

/** The memory target with its outbox replaced by a broken one. */
const brokenTarget = (name: string, Outbox: OutboxClass): ConformanceTarget<MemoryTransaction> =>
  brokenPairTarget(name, Outbox, MemoryInboxRepository)

/**
 * Takes a gap in the insert sequence as final: each event gets a number when it is inserted
 * (as a bigserial does, at insert rather than at commit), and a claim passes over every number
 * below the highest it claims that is not committed yet, as a relay reading "above the last
 * id it saw" does. An event whose transaction commits after a later one was claimed is never
 * claimed.
 */
class GapSkippingOutbox extends MemoryOutboxRepository {
  readonly #numbers = new Map<string, number>()
  readonly #committed = new Set<string>()
  readonly #passedOver = new Set<string>()
  #nextNumber = 1

  protected override insert(params: EnqueueParams, now: Date, tx: MemoryTransaction | undefined) {
    if (!this.#numbers.has(params.eventId)) this.#numbers.set(params.eventId, this.#nextNumber++)
    const event = super.insert(params, now, tx)
    if (tx) tx.enlist(() => this.#committed.add(params.eventId))
    else this.#committed.add(params.eventId)
    return event
  }

  protected override isClaimable(event: OutboxEvent & { seq: number }, nowMs: number): boolean {
    return !this.#passedOver.has(event.eventId) && super.isClaimable(event, nowMs)
  }

  override async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const claimed = await super.claim(options)
    const highest = Math.max(0, ...claimed.map(({ eventId }) => this.#numbers.get(eventId) ?? 0))
    for (const [eventId, number] of this.#numbers)
      if (number < highest && !this.#committed.has(eventId)) this.#passedOver.add(eventId)
    return claimed
  }
}

/**
 * A claim that reads through the caller's open transaction, as a store whose claim runs on
 * the connection holding it would: it takes events the transaction may still roll back.
 */
class UncommittedReadingClaimOutbox extends MemoryOutboxRepository {
  readonly #open = new Map<string, OutboxEvent>()

  protected override insert(params: EnqueueParams, now: Date, tx: MemoryTransaction | undefined) {
    const event = super.insert(params, now, tx)
    if (tx && !this.events.has(event.eventId)) {
      this.#open.set(event.eventId, event)
      // Removed when the transaction ends either way: on commit it is stored, on rollback gone.
      tx.enlist(() => this.#open.delete(event.eventId))
    }
    return event
  }

  override async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const claimed = await super.claim(options)
    const uncommitted = [...this.#open.values()].map((event) => ({
      ...event,
      status: 'publishing' as const,
      claimedBy: options.workerId,
    }))
    return [...claimed, ...uncommitted]
  }
}

/**
 * A store whose repositories ignore the ambient transaction: inside `store.transaction`, a
 * write without `{ tx }` applies at once, so a rollback leaves it stored.
 */
const ambientIgnoredTarget = (): ConformanceTarget<MemoryTransaction> => {
  const base = memoryTargetForRepositories()
  return {
    ...base,
    name: 'ambient-ignored',
    async create(options) {
      const fixture = await base.create(options)
      const ambient = memoryAmbient()
      const outbox = new MemoryOutboxRepository({ clock: options.clock })
      const inbox = new MemoryInboxRepository({ clock: options.clock })
      return {
        ...fixture,
        outbox,
        inbox,
        storeTransaction: (fn, transactionOptions) => ambient.run(fn, transactionOptions),
        oracle: snapshotOracle(outbox, inbox),
      }
    },
  }
}

/**
 * A store on one connection whose `store.transaction` does not make the store's other calls
 * wait for it: an enqueue from another async context, made while the transaction is open,
 * runs on the connection inside it and commits or rolls back with it.
 */
const connectionWideTransactionTarget = (): ConformanceTarget<MemoryTransaction> => {
  const base = memoryTargetForRepositories()
  return {
    ...base,
    name: 'connection-wide-transaction',
    async create(options) {
      const fixture = await base.create(options)
      const ambient = memoryAmbient()
      let open: MemoryTransaction | undefined
      class ConnectionWideOutbox extends MemoryOutboxRepository {
        protected override insert(params: EnqueueParams, now: Date, tx: MemoryTransaction | undefined) {
          return super.insert(params, now, tx ?? open)
        }
      }
      const outbox = new ConnectionWideOutbox({ clock: options.clock, ambient })
      const inbox = new MemoryInboxRepository({ clock: options.clock, ambient })
      return {
        ...fixture,
        outbox,
        inbox,
        // A function that is not one goes to the store as it is, to be refused there.
        storeTransaction: (fn, transactionOptions) =>
          typeof fn !== 'function'
            ? ambient.run(fn, transactionOptions)
            : ambient.run(async (tx, info) => {
                open = tx
                try {
                  return await fn(tx, info)
                } finally {
                  open = undefined
                }
              }, transactionOptions),
        oracle: snapshotOracle(outbox, inbox),
      }
    },
  }
}

/**
 * A store that lets its driver's errors through unwrapped: once its peer's connection is
 * broken, every call rejects with the driver's bare `Error`, not a StorageError around it.
 */
const unwrappedDriverErrorsTarget = (): ConformanceTarget<MemoryTransaction> => {
  const base = createMemoryTarget()
  return {
    ...base,
    name: 'unwrapped-driver-errors',
    async create(options) {
      const fixture = await base.create(options)
      return {
        ...fixture,
        async peer() {
          let broken = false
          const overDriver = <R extends object>(repository: R): R =>
            new Proxy(repository, {
              get(target, property) {
                const value: unknown = Reflect.get(target, property, target)
                if (typeof value !== 'function') return value
                return (...args: unknown[]) =>
                  broken ? Promise.reject(new Error('Connection is closed.')) : value.apply(target, args)
              },
            })
          return {
            outbox: overDriver(fixture.outbox),
            inbox: overDriver(fixture.inbox),
            dispose: async () => {},
            breakConnection: async () => {
              broken = true
            },
          }
        },
      }
    },
  }
}

/**
 * A transaction's enqueue that upserts at commit (`ON CONFLICT DO UPDATE` in a store that
 * queues writes): of two transactions that enqueued one id, the last to commit wins the row.
 */
class LastCommitWinsOutbox extends MemoryOutboxRepository {
  protected override insert(
    params: EnqueueParams,
    now: Date,
    tx: MemoryTransaction | undefined,
  ): OutboxEvent {
    const event = super.insert(params, now, tx)
    tx?.enlist(() => {
      const row = this.events.get(params.eventId)
      if (row) Object.assign(row, { subject: params.subject, payload: params.payload })
    })
    return event
  }
}

/**
 * Failed messages listed by arrival (a per-instance counter as the sort key), as DynamoDB
 * once did: right until a clock steps back between two deliveries.
 */
class ArrivalOrderFailedInbox extends MemoryInboxRepository {
  protected override async selectFailed(limit: number): Promise<InboxEvent[]> {
    return [...this.events.values()]
      .filter((event) => event.status === 'failed')
      .sort((a, b) => a.seq - b.seq)
      .slice(0, limit)
      .map(({ seq: _seq, ...event }) => ({ ...event }))
  }
}

/** A dead letter whose `availableAt` is reset to the failure time, as one shared "touch" update does. */
class FailureMovesAvailableAtOutbox extends MemoryOutboxRepository {
  override async markAsFailed(eventId: string, errorMessage: string, options?: FenceOptions): Promise<void> {
    await super.markAsFailed(eventId, errorMessage, options)
    const row = this.events.get(eventId)
    if (row) row.availableAt = this.clock()
  }
}

/** `markManyAsSent` that drops repeated ids before answering: a repeat's released lease is never reported. */
class DedupedAnswerOutbox extends MemoryOutboxRepository {
  override async markManyAsSent(eventIds: readonly string[], options?: FenceOptions): Promise<string[]> {
    return super.markManyAsSent([...new Set(eventIds)], options)
  }
}

/** The inbox raises EventNotFoundError with the error's default side: its message says "outbox". */
class OutboxWordedNotFoundInbox extends MemoryInboxRepository {
  readonly #reworded = async (action: () => Promise<void>, eventId: string): Promise<void> => {
    try {
      await action()
    } catch (error) {
      if (error instanceof EventNotFoundError) throw new EventNotFoundError(this.adapter, eventId)
      throw error
    }
  }

  override markAsProcessed(
    eventId: string,
    options?: InboxProcessedOptions<MemoryTransaction>,
  ): Promise<void> {
    return this.#reworded(() => super.markAsProcessed(eventId, options), eventId)
  }

  override markAsFailed(eventId: string, errorMessage: string, options?: InboxFenceOptions): Promise<void> {
    return this.#reworded(() => super.markAsFailed(eventId, errorMessage, options), eventId)
  }
}

/** A new message's claim stores its worker and lease but not its claim time (the column left at its default). */
class UntimedNewClaimInbox extends MemoryInboxRepository {
  override async claim(params: InboxParams, options: InboxClaimOptions): Promise<InboxClaimResult> {
    const isNew = !this.events.has(params.eventId)
    const result = await super.claim(params, options)
    const row = this.events.get(params.eventId)
    if (!isNew || !row) return result
    delete row.claimedAt
    const { claimedAt: _claimedAt, ...event } = result.event
    return { ...result, event }
  }
}

/** Each broken adapter and the case ids it must fail, no more and no fewer. */
/**
 * Repositories that take any transaction handle: another memory store's transaction (a
 * connection of another database, for a SQL store) is joined, and its commit writes the
 * events into this store.
 */
const foreignHandleAcceptedTarget = (): ConformanceTarget<MemoryTransaction> => {
  const base = createMemoryTarget()
  return {
    ...base,
    name: 'foreign-handle-accepted',
    async create(options) {
      const fixture = await base.create(options)
      const ambient = memoryAmbient()
      const outbox = new MemoryOutboxRepository({ clock: options.clock, ambient })
      const inbox = new MemoryInboxRepository({ clock: options.clock, ambient })
      return {
        ...fixture,
        outbox,
        inbox,
        storeTransaction: (fn, transactionOptions) => ambient.run(fn, transactionOptions),
        oracle: snapshotOracle(outbox, inbox),
      }
    },
  }
}

/**
 * A `store.transaction` whose rollback discards nothing and leaves its handle open, as a
 * store that only forgets a queued collector or MULTI would: a write made later with the kept
 * `tx` is queued into a transaction no one will commit and silently lost, not refused.
 */
const endedHandleOpenTarget = (): ConformanceTarget<MemoryTransaction> => {
  const base = memoryTargetForRepositories()
  return {
    ...base,
    name: 'ended-handle-open',
    async create(options) {
      const fixture = await base.create(options)
      const ambient = new AmbientTransactions({
        adapter: 'memory',
        driver: { ...memoryTransactionDriver, rollback: async () => {} },
      })
      const outbox = new MemoryOutboxRepository({ clock: options.clock, ambient })
      const inbox = new MemoryInboxRepository({ clock: options.clock, ambient })
      return {
        ...fixture,
        outbox,
        inbox,
        storeTransaction: (fn, transactionOptions) => ambient.run(fn, transactionOptions),
        oracle: snapshotOracle(outbox, inbox),
      }
    },
  }
}

/**
 * A `store.transaction` that drops its options on the way to the store's own: bad options
 * run the function instead of being refused, and a nested call may set retries.
 */
const optionsDroppedTarget = (): ConformanceTarget<MemoryTransaction> => {
  const base = createMemoryTarget()
  return {
    ...base,
    name: 'transaction-options-dropped',
    async create(options) {
      const fixture = await base.create(options)
      const storeTransaction = fixture.storeTransaction
      if (storeTransaction === undefined) throw new Error('the memory target has a storeTransaction')
      return { ...fixture, storeTransaction: (fn) => storeTransaction(fn) }
    },
  }
}

/**
 * Ordering keys with the head rule left out: a claim takes every due event of a key at once,
 * as `SELECT ... WHERE status = 'pending' ORDER BY seq LIMIT n` without the per-key filter
 * would, so two relays publish one aggregate's events side by side.
 */
class HeadsIgnoringOutbox extends MemoryOutboxRepository {
  protected override async claimEvents({ now, leaseUntil, workerId, limit }: ClaimRequest) {
    return this.ordered()
      .filter((event) => this.isClaimable(event, now.getTime()))
      .slice(0, limit)
      .map((event) => {
        Object.assign(event, { status: 'publishing', claimedAt: now, claimedBy: workerId, leaseUntil })
        const { seq: _seq, ...copy } = event
        return { ...copy }
      })
  }
}

/**
 * A store that numbers keyed events its own way: `keySeqFor` runs when the event is
 * inserted (inside the caller's transaction, if any) and its number replaces the memory
 * store's when the event becomes visible.
 */
abstract class RenumberingOutbox extends MemoryOutboxRepository {
  protected abstract keySeqFor(orderingKey: string): number

  protected override insert(params: EnqueueParams, now: Date, tx: MemoryTransaction | undefined) {
    const known = this.events.has(params.eventId) || tx?.staged(this).has(params.eventId) === true
    if (known || params.orderingKey === undefined) return super.insert(params, now, tx)
    const keySeq = this.keySeqFor(params.orderingKey)
    const event = super.insert(params, now, tx)
    const renumber = () => {
      const row = this.events.get(params.eventId)
      if (row) row.keySeq = keySeq
    }
    if (tx) {
      tx.enlist(renumber)
      return event
    }
    renumber()
    return { ...event, keySeq }
  }
}

/**
 * keySeq numbered within each repository call (a batch's rank of the key, as `ROW_NUMBER()
 * OVER (PARTITION BY key)` over the inserted rows would) instead of from a per-key counter:
 * every call restarts the key at 1.
 */
class PerCallKeySeqOutbox extends RenumberingOutbox {
  #inCall = new Map<string, number>()

  protected override insertEvents(
    events: Parameters<MemoryOutboxRepository['insertEvents']>[0],
    now: Date,
    tx: MemoryTransaction | undefined,
  ) {
    this.#inCall = new Map()
    return super.insertEvents(events, now, tx)
  }

  protected keySeqFor(orderingKey: string): number {
    const keySeq = (this.#inCall.get(orderingKey) ?? 0) + 1
    this.#inCall.set(orderingKey, keySeq)
    return keySeq
  }
}

/**
 * keySeq as one more than the highest stored for the key (`SELECT MAX(key_seq) + 1`): once
 * cleanup deleted every event of a key, the key starts again at 1 and a consumer that
 * remembers the last keySeq it saw takes the new events for replays.
 */
class MaxPlusOneKeySeqOutbox extends RenumberingOutbox {
  protected keySeqFor(orderingKey: string): number {
    let highest = 0
    for (const event of this.events.values())
      if (event.orderingKey === orderingKey) highest = Math.max(highest, event.keySeq ?? 0)
    return highest + 1
  }
}

/**
 * keySeq taken from a per-key counter when the event is inserted, not when it commits, and
 * nothing serializes the key's enqueues (a counter outside the transaction: a sequence, an
 * INCR): an event enqueued later from outside commits first with the higher keySeq, is
 * claimed and published before the lower one that is still to commit.
 */
class KeySeqAtInsertOutbox extends RenumberingOutbox {
  readonly #counters = new Map<string, number>()

  protected keySeqFor(orderingKey: string): number {
    const keySeq = (this.#counters.get(orderingKey) ?? 0) + 1
    this.#counters.set(orderingKey, keySeq)
    return keySeq
  }
}

/** Declares orderingKeys but has no column for the key: a keyed event is stored without it. */
class KeyDroppingOutbox extends MemoryOutboxRepository {
  protected override insert(params: EnqueueParams, now: Date, tx: MemoryTransaction | undefined) {
    const { orderingKey: _dropped, ...unkeyed } = params
    return super.insert(unkeyed, now, tx)
  }
}

/**
 * A dead letter never holds its key, whatever `keyedDeadLetters` says (the claim's filter
 * lists only `pending` and `publishing`): under the default 'block' a failed head's key goes on.
 */
class FailedHeadNotHoldingOutbox extends MemoryOutboxRepository {
  protected override keyHeads(_deadLettersBlockKeys: boolean): Map<string, number> {
    return super.keyHeads(false)
  }
}

/**
 * The head of a key is its lowest `keySeq` still `pending` or `publishing` (or `failed` when
 * dead letters block), as the rule read before: with 'skip', a dead letter redriven while a
 * later event of its key is publishing has the lowest `keySeq`, so it is claimed beside it.
 */
class LowestKeySeqHeadOutbox extends MemoryOutboxRepository {
  protected override keyHeads(deadLettersBlockKeys: boolean): Map<string, number> {
    const heads = new Map<string, number>()
    for (const event of this.events.values()) {
      if (event.orderingKey === undefined || event.keySeq === undefined) continue
      const holds =
        event.status === 'pending' ||
        event.status === 'publishing' ||
        (event.status === 'failed' && deadLettersBlockKeys)
      const head = heads.get(event.orderingKey)
      if (holds && (head === undefined || event.keySeq < head)) heads.set(event.orderingKey, event.keySeq)
    }
    return heads
  }
}

/**
 * Takes the highest publishing event of a key as its head (the event marked last, as a store
 * pinning every markAsPublishing ahead of the key would): with two publishing, the lower one's
 * expired lease gives nothing back, or the later one goes first.
 */
class HighestPublishingHeadOutbox extends MemoryOutboxRepository {
  protected override keyHeads(deadLettersBlockKeys: boolean): Map<string, number> {
    const heads = super.keyHeads(deadLettersBlockKeys)
    for (const event of this.events.values()) {
      if (event.orderingKey === undefined || event.keySeq === undefined || event.status !== 'publishing')
        continue
      const head = heads.get(event.orderingKey)
      if (head === undefined || event.keySeq > head) heads.set(event.orderingKey, event.keySeq)
    }
    return heads
  }
}

/**
 * A lease index kept beside the events (as a Redis sorted set would be) that marking sent
 * forgets to clean: once the lease time passes, the claim finds the sent event there and
 * claims it again, as if its publisher had crashed.
 */
class SentLeftInLeaseIndexOutbox extends MemoryOutboxRepository {
  readonly #leaseIndex = new Map<string, number>()

  protected override async claimEvents(request: ClaimRequest) {
    const claimed = await super.claimEvents(request)
    for (const event of claimed) this.#leaseIndex.set(event.eventId, request.leaseUntil.getTime())
    return claimed
  }

  protected override isClaimable(event: OutboxEvent & { seq: number }, nowMs: number): boolean {
    const indexed = this.#leaseIndex.get(event.eventId)
    // Every other path keeps its index entry right; only an event marked sent is left behind.
    return (
      super.isClaimable(event, nowMs) ||
      (event.status === 'sent' && indexed !== undefined && indexed <= nowMs)
    )
  }
}

/**
 * Looks for keyed heads and unkeyed events apart and answers both, each up to the limit,
 * without taking the first `limit` of the two together: a claim that mixes them can answer
 * more than the limit (the merge's LIMIT dropped).
 */
class UnmergedSourcesOutbox extends MemoryOutboxRepository {
  protected override async claimEvents(request: ClaimRequest) {
    const claimed = await super.claimEvents(request)
    const mixed =
      claimed.some((event) => event.orderingKey === undefined) &&
      claimed.some((event) => event.orderingKey !== undefined)
    if (!mixed || claimed.length < request.limit) return claimed
    return [...claimed, ...(await super.claimEvents(request))]
  }
}

/** Ignores `keyRun`'s cap: a run takes every claimable event of its key. */
class UncappedKeyRunOutbox extends MemoryOutboxRepository {
  protected override runsOfKeys(heads: ReadonlyMap<string, number>, nowMs: number, _keyRun: number) {
    return super.runsOfKeys(heads, nowMs, Number.MAX_SAFE_INTEGER)
  }
}

/**
 * Counts only heads against the claim's limit: the first `limit` heads and unkeyed events,
 * each head with its whole run, as a claim that picks heads and then joins their followers.
 */
class RunsOutsideLimitOutbox extends MemoryOutboxRepository {
  protected override async claimEvents(request: ClaimRequest): Promise<OutboxEvent[]> {
    const nowMs = request.now.getTime()
    const heads = this.keyHeads(request.deadLettersBlockKeys)
    const runs = this.runsOfKeys(heads, nowMs, request.keyRun)
    const picked = new Set<string>()
    let counted = 0
    for (const event of this.ordered()) {
      if (counted >= request.limit) break
      const isHead = event.orderingKey !== undefined && heads.get(event.orderingKey) === event.keySeq
      if (
        event.orderingKey === undefined
          ? !this.isClaimable(event, nowMs)
          : !isHead || !runs.has(event.eventId)
      )
        continue
      counted++
      picked.add(event.eventId)
      for (const follower of this.ordered())
        if (
          follower.orderingKey === event.orderingKey &&
          event.orderingKey !== undefined &&
          runs.has(follower.eventId)
        )
          picked.add(follower.eventId)
    }
    return this.ordered()
      .filter((event) => picked.has(event.eventId))
      .map((event) => {
        event.status = 'publishing'
        event.claimedAt = request.now
        event.claimedBy = request.workerId
        event.leaseUntil = request.leaseUntil
        const { seq: _seq, ...copy } = event
        return { ...copy }
      })
  }
}

/**
 * A run passes over the events of its key that are not claimable (not due, in a retry's
 * backoff, dead letters) instead of stopping at the first, as a claim that filters the key's
 * followers by status and due time without requiring them to be consecutive.
 */
class RunPastGapsOutbox extends MemoryOutboxRepository {
  protected override runsOfKeys(heads: ReadonlyMap<string, number>, nowMs: number, keyRun: number) {
    const ids = new Set<string>()
    const taken = new Map<string, number>()
    const byKeySeq = [...this.events.values()].sort((a, b) => (a.keySeq ?? 0) - (b.keySeq ?? 0))
    for (const event of byKeySeq) {
      if (event.orderingKey === undefined || event.keySeq === undefined) continue
      const head = heads.get(event.orderingKey)
      if (head === undefined || event.keySeq < head || !this.isClaimable(event, nowMs)) continue
      // The head itself must be claimable, as in the store's rule.
      const headEvent = byKeySeq.find((e) => e.orderingKey === event.orderingKey && e.keySeq === head)
      if (headEvent === undefined || !this.isClaimable(headEvent, nowMs)) continue
      const count = taken.get(event.orderingKey) ?? 0
      if (count >= keyRun) continue
      taken.set(event.orderingKey, count + 1)
      ids.add(event.eventId)
    }
    return ids
  }
}

/** `release` without its fence: any worker gives back any `publishing` event. */
class UnfencedReleaseOutbox extends MemoryOutboxRepository {
  protected override releaseHeld(eventIds: readonly string[], _workerId: string, now: Date) {
    return Promise.all(
      eventIds.map(async (id) => {
        const holder = (await this.get(id))?.claimedBy
        return holder === undefined ? [] : super.releaseHeld([id], holder, now)
      }),
    ).then((applied) => applied.flat())
  }
}

/**
 * The head of a key with several events publishing is the last one found (as one
 * publishing event per key used to allow): an expired run is taken again from its end.
 */
class ExpiredRunFromLastOutbox extends MemoryOutboxRepository {
  protected override keyHeads(deadLettersBlockKeys: boolean): Map<string, number> {
    const heads = super.keyHeads(deadLettersBlockKeys)
    for (const event of this.events.values())
      if (event.orderingKey !== undefined && event.keySeq !== undefined && event.status === 'publishing')
        heads.set(event.orderingKey, Math.max(heads.get(event.orderingKey) ?? 0, event.keySeq))
    return heads
  }
}

/** Clamps a `keyRun` it should refuse into 1..limit (1 when it is not a number). */
class ClampedKeyRunOutbox extends MemoryOutboxRepository {
  override claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const limit = options.limit ?? 100
    const keyRun =
      typeof options.keyRun === 'number' && Number.isFinite(options.keyRun)
        ? Math.min(limit, Math.max(1, Math.floor(options.keyRun)))
        : 1
    return super.claim({ ...options, keyRun })
  }
}

export const brokenAdapters: readonly {
  target: ConformanceTarget<MemoryTransaction>
  mustFail: readonly string[]
}[] = [
  {
    target: brokenTarget('check-then-insert', CheckThenInsertOutbox),
    // Two open transactions that enqueue one id race the same way.
    mustFail: ['outbox.idempotency.concurrent-same-id', 'outbox.tx.two-open-transactions'],
  },
  {
    target: brokenTarget('find-then-mark-claim', FindThenMarkClaimOutbox),
    // The memory target's peer is the same store: its racing claimers meet the defect too,
    // and so do the claimers racing for the heads of keys.
    mustFail: [
      'outbox.claim.disjoint-concurrent',
      'outbox.ordering.heads-across-connections',
      'outbox.claim.disjoint-across-connections',
    ],
  },
  {
    target: brokenTarget('reset-by-enqueue-time', ResetByEnqueueTimeOutbox),
    // Resetting by enqueue time also resets a claim taken over minutes ago: a live claim
    // (fenced-after-release resets its events with one taken over just before).
    mustFail: [
      'outbox.reset-stale.claim-time-not-enqueue-time',
      'outbox.reset-stale.live-claims-untouched',
      'outbox.claim.fenced-after-release',
    ],
  },
  {
    target: brokenTarget('timestamp-only-order', TimestampOnlyOrderOutbox),
    // Every case that checks order while the clock is frozen catches it, not only the one
    // named for it: claims, dead letters (oldest first) and redrive all order events.
    mustFail: [
      'outbox.order.frozen-clock',
      'outbox.order.claim-order',
      'outbox.order.not-physical',
      'outbox.claim.limit-counts-expired',
      'outbox.retry.dead-letter',
      'outbox.retry.requeue',
      'outbox.ordering.heads-only',
      'outbox.ordering.mixed-limit',
      'outbox.key-runs.one-claimer',
      'outbox.key-runs.limit',
      'outbox.key-runs.stops',
    ],
  },
  {
    target: brokenPairTarget('nats-unsafe-ids', NatsUnsafeIdOutbox, NatsUnsafeIdInbox),
    mustFail: ['outbox.validation.nats-verbatim', 'inbox.validation.nats-verbatim'],
  },
  {
    target: brokenTarget('payload-only-size', PayloadOnlySizeOutbox),
    // Its own enqueue takes `options.tx` only, so inside store.transaction it ignores the ambient
    // one too (the write inside a rolled-back store.transaction stays: store-transaction-isolated;
    // a write left running after the transaction ended is stored: ended-handle-refused).
    mustFail: [
      'outbox.tx.store-transaction-joins',
      'outbox.tx.store-transaction-isolated',
      'outbox.tx.ended-handle-refused',
      'outbox.payload.too-large',
    ],
  },
  {
    target: ambientIgnoredTarget(),
    // The write inside a rolled-back store.transaction stays: store-transaction-isolated sees it
    // too, and ended-handle-refused sees a write left running after the transaction ended stored.
    mustFail: [
      'outbox.tx.store-transaction-joins',
      'outbox.tx.store-transaction-isolated',
      'outbox.tx.ended-handle-refused',
    ],
  },
  {
    target: brokenInboxTarget('stream-position-merging-inbox', StreamPositionMergingInbox),
    // A new id at a cleaned-up message's stream position is merged into the new message there.
    mustFail: ['inbox.cleanup.no-trace', 'inbox.dedupe.stream-seq'],
  },
  {
    target: brokenPairTarget('collation-folded-ids', FoldingIdOutbox, FoldingIdInbox),
    mustFail: ['outbox.idempotency.folded-ids', 'inbox.dedupe.folded-ids'],
  },
  {
    target: brokenPairTarget('phantom-writes', PhantomWriteOutbox, PhantomWriteInbox),
    mustFail: ['outbox.validation.unknown-ids-create-nothing', 'inbox.validation.unknown-ids-create-nothing'],
  },
  {
    target: brokenPairTarget('whole-unit-cutoffs', WholeUnitCutoffOutbox, WholeUnitCutoffInbox),
    mustFail: [
      'outbox.cleanup.exact-cutoff',
      'outbox.reset-stale.exact-cutoff',
      'inbox.cleanup.exact-cutoff',
      'inbox.reset-stale.exact-cutoff',
    ],
  },
  {
    target: brokenTarget('first-claim-time', FirstClaimTimeOutbox),
    // The inbox twin of this defect is caught already, by inbox.claim.expired-lease and
    // inbox.reset-stale.claim-time, which check a takeover's claimedAt. The takeover's claim
    // returns its own claimedAt while the row keeps the first: outbox.fields.as-stored.
    mustFail: [
      'outbox.reset-stale.live-claims-untouched',
      'outbox.claim.fenced-after-release',
      'outbox.fields.as-stored',
    ],
  },
  {
    target: brokenPairTarget('null-columns', NullColumnsOutbox, NullColumnsInbox),
    // A null is not the stored (absent) value either: the as-stored cases see it too.
    mustFail: [
      'outbox.fields.as-stored',
      'inbox.fields.as-stored',
      'outbox.fields.absent-undefined',
      'inbox.fields.absent-undefined',
    ],
  },
  {
    target: brokenTarget('stale-order-index', StaleOrderIndexOutbox),
    mustFail: ['outbox.order.not-physical'],
  },
  {
    target: brokenTarget('physical-order-ties', PhysicalOrderOutbox),
    // Dead letters listed oldest first are ordered too: two failed in reverse order show it.
    mustFail: [
      'outbox.order.not-physical',
      'outbox.retry.dead-letter',
      'outbox.key-runs.stops',
      'outbox.key-runs.release',
      'outbox.key-runs.expired-run',
    ],
  },
  {
    target: brokenPairTarget('one-page', OnePageOutbox, OnePageInbox),
    // outbox.cleanup.batches caught an outbox cleanup that stops after one page already.
    mustFail: ['outbox.cleanup.batches', 'outbox.paging.many-pages', 'inbox.paging.many-pages'],
  },
  {
    target: instanceLockedTarget(),
    // Within one instance the lock makes claims disjoint: only the cases across connections see it.
    mustFail: [
      'outbox.ordering.heads-across-connections',
      'outbox.claim.disjoint-across-connections',
      'inbox.claim.exactly-one-across-connections',
    ],
  },
  {
    target: brokenTarget('lease-record-fence', LeaseRecordFenceOutbox),
    // A fence that reads a lease record the mark does not clear lets a repeated fenced mark apply twice.
    // sent-batch-stays-sent: the holder renews the lease of events it marked sent.
    mustFail: [
      'outbox.claim.sent-batch-stays-sent',
      'outbox.claim.fenced-after-release',
      'outbox.sent.repeated-ids',
    ],
  },
  {
    target: brokenTarget('status-blind-reads', StatusBlindOutbox),
    mustFail: ['outbox.find-pending.pending-only', 'outbox.cleanup.status-not-sent-at'],
  },
  {
    target: brokenPairTarget('unpruned-failed-index', UnprunedFailedIndexOutbox, UnprunedFailedIndexInbox),
    // The index outlives cleanup: the id received again after it is listed as failed.
    mustFail: ['outbox.retry.failed-listing', 'inbox.failed.listing', 'inbox.cleanup.no-trace'],
  },
  {
    target: brokenTarget('empty-means-all', EmptyMeansAllOutbox),
    mustFail: ['outbox.validation.empty-inputs'],
  },
  {
    target: brokenTarget('last-write-wins-in-tx', LastWriteWinsInTxOutbox),
    mustFail: ['outbox.tx.batch-first-write-wins'],
  },
  {
    target: brokenTarget('own-arguments-in-tx', OwnArgumentsInTxOutbox),
    mustFail: ['outbox.tx.repeat-first-write-wins'],
  },
  {
    target: brokenPairTarget('forgetful-get', ForgetfulGetOutbox, ForgetfulGetInbox),
    mustFail: ['outbox.fields.as-stored', 'inbox.fields.as-stored'],
  },
  {
    target: brokenPairTarget('sideless-messages', SidelessMessagesOutbox, SidelessMessagesInbox),
    // The ordering cases read the side and field in the messages about orderingKey and keyedDeadLetters.
    mustFail: [
      'outbox.validation.names-side-and-field',
      'inbox.validation.names-side-and-field',
      'outbox.ordering.validation',
      'outbox.ordering.dead-letter-policy',
      'outbox.key-runs.validation',
    ],
  },
  {
    target: brokenInboxTarget('dedupe-record-kept', DedupeRecordKeepingInbox),
    mustFail: ['inbox.cleanup.no-trace'],
  },
  {
    target: brokenInboxTarget('unfenced-processed-mark', UnfencedProcessedInbox),
    mustFail: ['inbox.fence.processed-after-takeover', 'inbox.fence.holder-marks'],
  },
  {
    target: brokenInboxTarget('unfenced-processed-mark-in-tx', UnfencedInTransactionInbox),
    mustFail: ['inbox.fence.processed-after-takeover'],
  },
  {
    target: brokenInboxTarget('unfenced-failed-mark', UnfencedFailedInbox),
    mustFail: ['inbox.cleanup.failed-kept', 'inbox.fence.failed-never-overwrites-processed'],
  },
  {
    target: brokenInboxTarget('live-lease-fence', LiveLeaseFencedInbox),
    mustFail: ['inbox.fence.holder-marks'],
  },
  {
    target: brokenInboxTarget('id-tie-break-failed-inbox', IdTieBreakFailedInbox),
    mustFail: ['inbox.failed.same-instant-arrival'],
  },
  {
    target: brokenTarget('expired-beyond-limit', ExpiredBeyondLimitOutbox),
    // fenced-after-release also claims with a limit below the due plus expired events.
    mustFail: [
      'outbox.claim.limit-counts-expired',
      'outbox.claim.fenced-after-release',
      'outbox.key-runs.expired-run',
    ],
  },
  {
    target: brokenTarget('gap-skipping-claims', GapSkippingOutbox),
    // ordering.commit-order claims the outside event while the open transaction's is to commit.
    mustFail: ['outbox.tx.commit-order', 'outbox.ordering.commit-order'],
  },
  {
    target: brokenTarget('uncommitted-reading-claim', UncommittedReadingClaimOutbox),
    // Both commit-order cases claim while a transaction is still open.
    mustFail: ['outbox.tx.commit-order', 'outbox.tx.claim-while-open', 'outbox.ordering.commit-order'],
  },
  {
    target: brokenTarget('last-commit-wins', LastCommitWinsOutbox),
    // Its upsert at commit also lets a second enqueue of one id in one transaction win.
    mustFail: ['outbox.tx.repeat-first-write-wins', 'outbox.tx.two-open-transactions'],
  },
  {
    target: brokenInboxTarget('arrival-order-failed-inbox', ArrivalOrderFailedInbox),
    mustFail: ['inbox.failed.clock-back'],
  },
  {
    target: brokenTarget('failure-moves-available-at', FailureMovesAvailableAtOutbox),
    mustFail: ['outbox.failed.keeps-available-at'],
  },
  {
    target: brokenTarget('deduped-mark-answer', DedupedAnswerOutbox),
    mustFail: ['outbox.sent.repeated-ids'],
  },
  {
    target: brokenInboxTarget('outbox-worded-not-found', OutboxWordedNotFoundInbox),
    mustFail: ['inbox.validation.not-found-names-side'],
  },
  {
    target: brokenInboxTarget('untimed-new-claim', UntimedNewClaimInbox),
    mustFail: ['inbox.claim.records-claim-time'],
  },
  {
    target: connectionWideTransactionTarget(),
    // ordering.commit-order's outside enqueue joins the open transaction: it answers at once
    // yet commits with it, after the transaction's own event.
    mustFail: ['outbox.tx.store-transaction-isolated', 'outbox.ordering.commit-order'],
  },
  {
    target: unwrappedDriverErrorsTarget(),
    mustFail: ['outbox.errors.driver-failure', 'inbox.errors.driver-failure'],
  },
  {
    target: foreignHandleAcceptedTarget(),
    mustFail: ['outbox.tx.foreign-handle-refused'],
  },
  {
    target: endedHandleOpenTarget(),
    mustFail: ['outbox.tx.ended-handle-refused'],
  },
  {
    target: optionsDroppedTarget(),
    mustFail: ['outbox.tx.store-transaction-input'],
  },
  {
    target: brokenTarget('heads-ignored', HeadsIgnoringOutbox),
    mustFail: [
      'outbox.ordering.heads-only',
      'outbox.ordering.dead-letter-policy',
      'outbox.ordering.skip-redrive-in-flight',
      'outbox.ordering.lowest-publishing-head',
      'outbox.ordering.mixed-limit',
      'outbox.ordering.heads-across-connections',
      'outbox.key-runs.one-claimer',
      'outbox.key-runs.limit',
      'outbox.key-runs.stops',
      'outbox.key-runs.release',
      'outbox.key-runs.expired-run',
    ],
  },
  {
    target: brokenTarget('sent-left-in-lease-index', SentLeftInLeaseIndexOutbox),
    // A sent event claimed again: also a sent event's fields change, and a key's later event waits.
    mustFail: ['outbox.claim.sent-batch-stays-sent', 'outbox.fields.as-stored', 'outbox.ordering.heads-only'],
  },
  {
    target: brokenTarget('lowest-key-seq-head', LowestKeySeqHeadOutbox),
    mustFail: ['outbox.ordering.skip-redrive-in-flight'],
  },
  {
    target: brokenTarget('highest-publishing-head', HighestPublishingHeadOutbox),
    mustFail: ['outbox.ordering.lowest-publishing-head', 'outbox.key-runs.expired-run'],
  },
  {
    target: brokenTarget('unmerged-claim-sources', UnmergedSourcesOutbox),
    mustFail: ['outbox.ordering.mixed-limit'],
  },
  {
    target: brokenTarget('key-seq-per-call', PerCallKeySeqOutbox),
    // Two calls give a key two events numbered 1: both are heads, and the two enqueues of
    // commit-order tie.
    mustFail: [
      'outbox.ordering.key-seq',
      'outbox.ordering.heads-across-connections',
      'outbox.ordering.commit-order',
      'outbox.key-runs.stops',
    ],
  },
  {
    target: brokenTarget('key-seq-max-plus-one', MaxPlusOneKeySeqOutbox),
    // Its MAX reads no uncommitted event either: the enqueue from outside ties with the open one.
    mustFail: ['outbox.ordering.key-seq', 'outbox.ordering.commit-order'],
  },
  {
    target: brokenTarget('key-seq-at-insert', KeySeqAtInsertOutbox),
    mustFail: ['outbox.ordering.commit-order'],
  },
  {
    target: brokenTarget('ordering-key-dropped', KeyDroppingOutbox),
    // Every case that enqueues a keyed event; validation's last step stores two.
    mustFail: [
      'outbox.ordering.key-seq',
      'outbox.ordering.validation',
      'outbox.ordering.heads-only',
      'outbox.ordering.dead-letter-policy',
      'outbox.ordering.skip-redrive-in-flight',
      'outbox.ordering.lowest-publishing-head',
      'outbox.ordering.mixed-limit',
      'outbox.ordering.heads-across-connections',
      'outbox.ordering.commit-order',
      'outbox.key-runs.one-claimer',
      'outbox.key-runs.limit',
      'outbox.key-runs.stops',
      'outbox.key-runs.release',
      'outbox.key-runs.expired-run',
    ],
  },
  {
    target: brokenTarget('failed-head-not-holding', FailedHeadNotHoldingOutbox),
    mustFail: ['outbox.ordering.heads-only', 'outbox.ordering.dead-letter-policy', 'outbox.key-runs.stops'],
  },
  {
    target: brokenTarget('key-run-uncapped', UncappedKeyRunOutbox),
    mustFail: [
      'outbox.ordering.heads-only',
      'outbox.ordering.dead-letter-policy',
      'outbox.ordering.skip-redrive-in-flight',
      'outbox.ordering.lowest-publishing-head',
      'outbox.ordering.heads-across-connections',
      'outbox.key-runs.one-claimer',
      'outbox.key-runs.limit',
      'outbox.key-runs.stops',
      'outbox.key-runs.release',
      'outbox.key-runs.expired-run',
    ],
  },
  {
    target: brokenTarget('key-runs-outside-limit', RunsOutsideLimitOutbox),
    mustFail: ['outbox.key-runs.limit'],
  },
  {
    target: brokenTarget('key-run-past-gaps', RunPastGapsOutbox),
    mustFail: ['outbox.key-runs.stops'],
  },
  {
    target: brokenTarget('release-unfenced', UnfencedReleaseOutbox),
    mustFail: ['outbox.key-runs.release', 'outbox.key-runs.expired-run'],
  },
  {
    target: brokenTarget('expired-run-from-last', ExpiredRunFromLastOutbox),
    mustFail: ['outbox.ordering.lowest-publishing-head', 'outbox.key-runs.expired-run'],
  },
  {
    target: brokenTarget('key-run-clamped', ClampedKeyRunOutbox),
    mustFail: ['outbox.key-runs.validation'],
  },
]
