import { repeatInBatches } from '../batches.js'
import { addMs, type Clock, cutoffDays, cutoffMinutes } from '../clock.js'
import { inboxCounts } from '../counts.js'
import {
  type InboxClaimOptions,
  type InboxClaimResult,
  type InboxCounts,
  type InboxEvent,
  type InboxFenceOptions,
  type InboxParams,
  type InboxProcessedOptions,
  type InboxRepository,
  type InboxStatus,
  PROCESSING_TIMEOUT_MESSAGE,
} from '../inbox.js'
import type { AmbientTransactions } from '../transactions/ambient-transactions.js'
import { Validator } from '../validation.js'
import { assertFenceApplied } from './fence-outcome.js'
import {
  type FencedOutcome,
  type InboxClaimRequest,
  type RepositorySettings,
  type StatusCountRows,
  SWEEP_BATCH,
} from './primitives.js'
import { type ClassifyStorageError, classifyUnknown, runStorageOperation } from './storage-failure.js'

/** The inbox's settings: the outbox's, without the event size (the inbox records what NATS delivered). */
export type InboxRepositorySettings<Tx> = Omit<RepositorySettings<Tx>, 'maxEventBytes'>

/**
 * The inbox contract, implemented once over a store's primitives: validation, operation
 * names, error wrapping, "not found", sweeps in bounded batches. An adapter implements the
 * `protected abstract` primitives, each atomic against every other client.
 */
export abstract class InboxRepositoryKernel<Tx = never> implements InboxRepository<Tx> {
  /** The adapter's name, the `[txbox] [<adapter>]` of its errors. */
  readonly adapter: string
  protected readonly clock: Clock
  protected readonly validate: Validator
  readonly #classify: ClassifyStorageError
  readonly #transaction: ((tx: Tx | undefined) => Tx | undefined) | undefined
  readonly #ambient: AmbientTransactions<Tx> | undefined
  readonly #sweepBatch: number

  constructor(settings: InboxRepositorySettings<Tx>) {
    this.adapter = settings.adapter
    this.clock = settings.clock
    this.validate = new Validator(settings.adapter, 'inbox')
    this.#classify = settings.classify ?? classifyUnknown
    this.#transaction = settings.transaction
    this.#ambient = settings.ambient
    this.#sweepBatch = settings.sweepBatch ?? SWEEP_BATCH
  }

  // ---------------------------------------------------------------- primitives ---

  /**
   * Records a delivery by `eventId` alone: inserts a `processing` event with `deliveries` 1
   * (`receivedAt` = `now`, the position when both `stream` and `streamSeq` are given), or
   * adds 1 to the stored one's `deliveries`. Answers the stored event.
   */
  protected abstract recordDelivery(params: InboxParams, now: Date): Promise<InboxEvent>

  /** The inbox `claim` as the contract describes it, in one atomic step (counts the delivery too). */
  protected abstract claimDelivery(request: InboxClaimRequest): Promise<InboxClaimResult>

  /**
   * `processed`, `processedAt` = `now`, lease cleared, in one atomic step that checks the
   * fence: with `workerId`, only while the event is `processing` and claimed by that worker
   * (an expired lease nobody took over still counts, as in the outbox). With `tx`, inside the
   * caller's transaction, the fence evaluated on the row as the transaction's write sees it
   * (after a concurrent writer's commit), never by a read before the write. Answers
   * `missing` when the id is not stored, `lost` when the fence refused.
   */
  protected abstract setProcessed(
    eventId: string,
    now: Date,
    tx: Tx | undefined,
    workerId: string | undefined,
  ): Promise<FencedOutcome>

  /**
   * `failed` with `errorMessage`, lease cleared, in one atomic step: with `workerId`, fenced
   * as `setProcessed`; without, only while the event is not `processed` (processed is final).
   * Answers `missing` when the id is not stored, `lost` when the condition refused.
   */
  protected abstract setFailed(
    eventId: string,
    errorMessage: string,
    workerId: string | undefined,
  ): Promise<FencedOutcome>

  /** Deletes at most `limit` `processed` events with `processedAt < cutoff`; answers how many. */
  protected abstract deleteProcessed(cutoff: Date, limit: number): Promise<number>

  /**
   * Moves `processing` events whose claim time (`claimedAt ?? receivedAt`) is before `cutoff`
   * to `failed` with `errorMessage`, lease cleared: at most `limit` (or all in one atomic
   * statement); answers how many.
   */
  protected abstract failStale(cutoff: Date, errorMessage: string, limit: number): Promise<number>

  /** `(status, count)` for the statuses present. */
  protected abstract countStatuses(): Promise<StatusCountRows>

  /** `failed` events, oldest received first, at most `limit`. */
  protected abstract selectFailed(limit: number): Promise<InboxEvent[]>

  /** The stored event, or null. */
  protected abstract read(eventId: string): Promise<InboxEvent | null>

  /** The stored event's status; a store with a cheaper read than `read` overrides it. */
  protected async readStatus(eventId: string): Promise<InboxStatus | undefined> {
    return (await this.read(eventId))?.status
  }

  // ---------------------------------------------------------------- the contract ---

  /** Runs a primitive as `operation`: driver errors become a classified StorageError. */
  protected storage<T>(operation: string, run: () => Promise<T>): Promise<T> {
    return runStorageOperation(this.adapter, `inbox.${operation}`, this.#classify, run)
  }

  async findOrCreate(params: InboxParams): Promise<InboxEvent> {
    const valid = this.validate.inboxParams(params)
    const now = this.clock()
    return this.storage('findOrCreate', () => this.recordDelivery(valid, now))
  }

  async claim(params: InboxParams, options: InboxClaimOptions): Promise<InboxClaimResult> {
    const valid = this.validate.inboxParams(params)
    const { leaseMs, workerId } = this.validate.leaseOptions(options)
    const now = this.clock()
    const request: InboxClaimRequest = { params: valid, now, workerId, leaseUntil: addMs(now, leaseMs) }
    return this.storage('claim', () => this.claimDelivery(request))
  }

  async markAsProcessed(eventId: string, options?: InboxProcessedOptions<Tx>): Promise<void> {
    const id = this.validate.eventId(eventId)
    const valid = this.validate.writeOptions(options) as { tx?: unknown; workerId?: unknown } | undefined
    const workerId = this.validate.optionalWorkerId(valid?.workerId)
    const explicit = valid?.tx as Tx | undefined
    if (explicit !== undefined) this.#ambient?.assertJoinable(explicit)
    const given = explicit ?? this.#ambient?.current()
    const tx = this.#transaction === undefined ? given : this.#transaction(given)
    const now = this.clock()
    const outcome = await this.storage('markAsProcessed', () => this.setProcessed(id, now, tx, workerId))
    this.#fenceOutcome(outcome, id, workerId, 'markAsProcessed')
  }

  async markAsFailed(eventId: string, errorMessage: string, options?: InboxFenceOptions): Promise<void> {
    const id = this.validate.eventId(eventId)
    const message = this.validate.text(errorMessage, 'errorMessage')
    const workerId = this.validate.fence(options)
    const outcome = await this.storage('markAsFailed', () => this.setFailed(id, message, workerId))
    this.#fenceOutcome(outcome, id, workerId, 'markAsFailed')
  }

  /**
   * A mark's outcome, mapped as every fenced write's; besides, an unfenced `markAsFailed` of a
   * `processed` event changes nothing and is not an error (processed is final: the handler's
   * effects committed once).
   */
  #fenceOutcome(
    outcome: FencedOutcome,
    eventId: string,
    workerId: string | undefined,
    operation: 'markAsProcessed' | 'markAsFailed',
  ): void {
    if (outcome === 'lost' && workerId === undefined && operation === 'markAsFailed') return
    assertFenceApplied(outcome, { adapter: this.adapter, side: 'inbox', operation }, eventId, workerId)
  }

  async isProcessed(eventId: string): Promise<boolean> {
    const id = this.validate.eventId(eventId)
    return (await this.storage('isProcessed', () => this.readStatus(id))) === 'processed'
  }

  async cleanup(olderThanDays: number): Promise<number> {
    const cutoff = cutoffDays(this.clock(), this.validate.nonNegative(olderThanDays, 'olderThanDays'))
    return this.storage('cleanup', () =>
      repeatInBatches(this.#sweepBatch, (limit) => this.deleteProcessed(cutoff, limit)),
    )
  }

  async resetStale(staleMinutes: number): Promise<number> {
    const cutoff = cutoffMinutes(this.clock(), this.validate.nonNegative(staleMinutes, 'staleMinutes'))
    return this.storage('resetStale', () =>
      repeatInBatches(this.#sweepBatch, (limit) => this.failStale(cutoff, PROCESSING_TIMEOUT_MESSAGE, limit)),
    )
  }

  async getCountByStatus(): Promise<InboxCounts> {
    return this.storage('getCountByStatus', async () => inboxCounts(await this.countStatuses()))
  }

  async getFailedEvents(limit?: number): Promise<InboxEvent[]> {
    const max = this.validate.limit(limit)
    return this.storage('getFailedEvents', () => this.selectFailed(max))
  }

  async get(eventId: string): Promise<InboxEvent | null> {
    const id = this.validate.eventId(eventId)
    return this.storage('get', () => this.read(id))
  }
}
