import type { TransactWriteItem } from '@aws-sdk/client-dynamodb'
import {
  type AmbientTransactions,
  type FencedOutcome,
  INBOX_STATUSES,
  type InboxClaimRequest,
  type InboxClaimResult,
  type InboxEvent,
  type InboxParams,
  InboxRepositoryKernel,
  type InboxStatus,
  type StatusCountRows,
} from '@txbox/core'
import { DynamoDbContext, type UpdateSpec } from './client.js'
import { type DynamoDbStoreOptions, resolveOptions } from './dynamodb-options.js'
import { DynamoDbFailure } from './errors.js'
import { inboxIdOf, inboxPk, inboxStatusPk, nextSequence, orderKey, timeKey } from './keys.js'
import { assertItemFits, type Item, N, S, toInboxEvent } from './rows.js'

/** Rounds of the create-or-find loop before contention is reported as a StorageError. */
const MAX_ATTEMPTS = 20

const NOT_STORED = 'attribute_not_exists(#pk)'
const EXISTS = 'attribute_exists(#pk)'
/** Unfenced `markAsFailed`: a processed event is final. */
const NOT_PROCESSED = 'attribute_exists(#pk) AND #status <> :processed'
/** "Holds the claim", as the outbox's fence: processing and claimed by this worker. */
const FENCE = 'attribute_exists(#pk) AND #status = :processing AND #claimedBy = :worker'

/** The spec with the fence as its condition when `workerId` is given. */
const fenced = (spec: UpdateSpec, workerId: string | undefined): UpdateSpec =>
  workerId === undefined
    ? spec
    : {
        ...spec,
        condition: FENCE,
        values: { ...spec.values, ':processing': S('processing'), ':worker': S(workerId) },
      }
/** Counts one more delivery of a stored event. */
const BUMP: UpdateSpec = { update: 'ADD #deliveries :one', condition: EXISTS, values: { ':one': N(1) } }

/**
 * The inbox on DynamoDB. Each event is one item (`pk = ib#e#<eventId>`): the event id alone
 * is the identity. `(stream, streamSeq)` is recorded, never used to merge two ids (a
 * JetStream stream re-created under its name restarts at sequence 1); a redelivery of a
 * stored id at a new position keeps the position recorded first. The sharded status index
 * (`gsi2`) serves counts, cleanup, resetStale and the dead-letter list.
 */
export class DynamoDbInboxRepository extends InboxRepositoryKernel<TransactWriteItem[]> {
  readonly #db: DynamoDbContext

  /** `ambient` is internal: the `store.transaction` that `createDynamoDbStore` gives both repositories. */
  constructor(options: DynamoDbStoreOptions, ambient?: AmbientTransactions<TransactWriteItem[]>) {
    const db = new DynamoDbContext(resolveOptions(options), ambient)
    super(db.settings)
    this.#db = db
  }

  /** The item of a new delivery, claimed until `lease.leaseUntil` when given. Size-checked before any I/O. */
  #newItem(params: InboxParams, now: Date, lease?: { workerId: string; leaseUntil: Date }): Item {
    const nowMs = now.getTime()
    const shard = this.#db.shardOf(params.eventId)
    const item: Item = {
      pk: S(inboxPk(params.eventId)),
      eventId: S(params.eventId),
      subject: S(params.subject),
      payload: S(params.payload),
      status: S('processing'),
      receivedAt: N(nowMs),
      deliveries: N(1),
      // Failed events are listed oldest received first (by receivedAt, even when a clock
      // stepped back between two deliveries), messages received at one instant in arrival order.
      receivedKey: S(orderKey(nowMs, nextSequence())),
      gsi2pk: S(inboxStatusPk('processing', shard)),
      // resetStale finds processing events by claim time (claimedAt ?? receivedAt).
      gsi2sk: S(timeKey(nowMs)),
    }
    if (params.headers !== undefined) item.headers = S(params.headers)
    if (params.stream !== undefined && params.streamSeq !== undefined) {
      item.stream = S(params.stream)
      item.streamSeq = N(params.streamSeq)
    }
    if (lease) {
      item.claimedBy = S(lease.workerId)
      item.claimedAt = N(nowMs)
      item.leaseUntil = N(lease.leaseUntil.getTime())
    }
    assertItemFits(item, params.eventId)
    return item
  }

  protected async recordDelivery(params: InboxParams, now: Date): Promise<InboxEvent> {
    const item = this.#newItem(params, now)
    const pk = inboxPk(params.eventId)
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (await this.#db.put(item, NOT_STORED)) return toInboxEvent(item)
      const bumped = await this.#db.update(pk, BUMP)
      if (bumped) return toInboxEvent(bumped)
    }
    throw new DynamoDbFailure('conflict', true, `event ${params.eventId} kept vanishing`)
  }

  protected async claimDelivery({
    params,
    now,
    workerId,
    leaseUntil,
  }: InboxClaimRequest): Promise<InboxClaimResult> {
    const item = this.#newItem(params, now, { workerId, leaseUntil })
    const pk = inboxPk(params.eventId)
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (await this.#db.put(item, NOT_STORED)) return { event: toInboxEvent(item), shouldProcess: true }
      // Take it over if it is failed or its lease expired; the condition makes this a
      // compare-and-set, so of N callers only the first sees it takeable. A processing
      // event without a lease (the findOrCreate flow) is live until resetStale.
      const taken = await this.#db.update(pk, {
        update:
          'SET #status = :processing, #claimedBy = :worker, #claimedAt = :now, #leaseUntil = :lease,' +
          ' #gsi2pk = :g2pk, #gsi2sk = :g2sk REMOVE #errorMessage, #expiresAt ADD #deliveries :one',
        condition: '#status = :failed OR (#status = :processing AND #leaseUntil <= :now)',
        values: {
          ':processing': S('processing'),
          ':failed': S('failed'),
          ':worker': S(workerId),
          ':now': N(now.getTime()),
          ':lease': N(leaseUntil.getTime()),
          ':g2pk': S(inboxStatusPk('processing', this.#db.shardOf(params.eventId))),
          ':g2sk': S(timeKey(now.getTime())),
          ':one': N(1),
        },
      })
      if (taken) return { event: toInboxEvent(taken), shouldProcess: true }
      // Not takeable: a duplicate. It still counts as a delivery.
      const bumped = await this.#db.update(pk, BUMP)
      if (bumped) return { event: toInboxEvent(bumped), shouldProcess: false }
    }
    throw new DynamoDbFailure('conflict', true, `event ${params.eventId} kept vanishing`)
  }

  #processedSpec(eventId: string, nowMs: number): UpdateSpec {
    const statusPk = inboxStatusPk('processed', this.#db.shardOf(eventId))
    return {
      ...this.#db.finalSpec('processed', 'processedAt', statusPk, nowMs, '#claimedBy, #leaseUntil'),
      condition: EXISTS,
    }
  }

  protected async setProcessed(
    eventId: string,
    now: Date,
    tx: TransactWriteItem[] | undefined,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    const pk = inboxPk(eventId)
    const spec = fenced(this.#processedSpec(eventId, now.getTime()), workerId)
    if (!tx) return this.#outcome(pk, await this.#db.update(pk, spec))
    this.#db.checkCollector(tx, [pk])
    // Unknown ids and lost leases fail now, like without tx, not later as a cancelled
    // transaction. The Update keeps its condition (existence, and the fence): an event
    // deleted or taken over before the caller commits cancels the caller's whole
    // transaction (reason ConditionalCheckFailed at this action), handler writes included.
    const stored = await this.#db.get(pk, '#status, #claimedBy')
    if (stored === undefined) return 'missing'
    if (workerId !== undefined && !(stored.status?.S === 'processing' && stored.claimedBy?.S === workerId))
      return 'lost'
    // Checked again now: other calls may have added actions to the collector meanwhile.
    this.#db.checkCollector(tx, [pk])
    tx.push(this.#db.updateAction(pk, spec))
    return 'applied'
  }

  /** Unfenced, a processed event is final: failing it would make it claimable again. */
  protected async setFailed(
    eventId: string,
    errorMessage: string,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    const pk = inboxPk(eventId)
    const spec = fenced(
      {
        update:
          'SET #status = :failed, #errorMessage = :msg, #gsi2pk = :g2pk, #gsi2sk = #receivedKey' +
          ' REMOVE #claimedBy, #leaseUntil, #expiresAt',
        condition: workerId === undefined ? NOT_PROCESSED : EXISTS,
        values: {
          ':failed': S('failed'),
          ':msg': S(errorMessage),
          ':g2pk': S(inboxStatusPk('failed', this.#db.shardOf(eventId))),
          ':processed': S('processed'),
        },
      },
      workerId,
    )
    return this.#outcome(pk, await this.#db.update(pk, spec))
  }

  /** A false condition is told apart afterwards: a missing item, or a refused fence. */
  async #outcome(pk: string, written: Item | undefined): Promise<FencedOutcome> {
    if (written) return 'applied'
    return (await this.#db.exists(pk)) ? 'lost' : 'missing'
  }

  protected override async readStatus(eventId: string): Promise<InboxStatus | undefined> {
    return (await this.#db.get(inboxPk(eventId), '#status'))?.status?.S as InboxStatus | undefined
  }

  protected deleteProcessed(cutoff: Date, limit: number): Promise<number> {
    return this.#db.deleteBefore(
      (shard) => inboxStatusPk('processed', shard),
      'processed',
      'processedAt',
      cutoff,
      limit,
    )
  }

  protected async failStale(cutoff: Date, errorMessage: string, limit: number): Promise<number> {
    const cutoffMs = cutoff.getTime()
    return this.#db.sweep(
      (shard) => inboxStatusPk('processing', shard),
      cutoffMs,
      limit,
      async (entry) => {
        const pk = entry.pk?.S ?? ''
        const failed = await this.#db.update(pk, {
          update:
            'SET #status = :failed, #errorMessage = :msg, #gsi2pk = :g2pk, #gsi2sk = #receivedKey' +
            ' REMOVE #claimedBy, #leaseUntil, #expiresAt',
          // The claim time is claimedAt, or receivedAt for an event never claimed.
          condition:
            '#status = :processing AND ((attribute_exists(#claimedAt) AND #claimedAt < :cutoff)' +
            ' OR (attribute_not_exists(#claimedAt) AND #receivedAt < :cutoff))',
          values: {
            ':failed': S('failed'),
            ':processing': S('processing'),
            ':msg': S(errorMessage),
            ':cutoff': N(cutoffMs),
            ':g2pk': S(inboxStatusPk('failed', this.#db.shardOf(inboxIdOf(pk)))),
          },
        })
        return failed !== undefined
      },
    )
  }

  protected countStatuses(): Promise<StatusCountRows> {
    return this.#db.countStatuses(INBOX_STATUSES, inboxStatusPk)
  }

  protected async selectFailed(limit: number): Promise<InboxEvent[]> {
    return (await this.#db.failedItems((shard) => inboxStatusPk('failed', shard), limit)).map(toInboxEvent)
  }

  protected async read(eventId: string): Promise<InboxEvent | null> {
    const item = await this.#db.get(inboxPk(eventId))
    return item ? toInboxEvent(item) : null
  }
}
