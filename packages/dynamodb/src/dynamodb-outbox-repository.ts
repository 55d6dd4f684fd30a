import type { TransactWriteItem } from '@aws-sdk/client-dynamodb'
import {
  type AmbientTransactions,
  boundedChunks,
  type ClaimRequest,
  type FencedOutcome,
  type NewOutboxEventParams,
  OUTBOX_STATUSES,
  type OutboxChange,
  type OutboxEvent,
  OutboxRepositoryKernel,
  type RequeueOutcome,
  type StatusCountRows,
} from '@txbox/core'
import {
  backoff,
  DynamoDbContext,
  MAX_TRANSACTION_ACTIONS,
  MAX_TRANSACTION_ITEM_BYTES,
  mapLimit,
  type UpdateSpec,
  type Values,
  WRITE_CONCURRENCY,
} from './client.js'
import { type DynamoDbStoreOptions, resolveOptions } from './dynamodb-options.js'
import { DynamoDbFailure } from './errors.js'
import {
  CLAIM_INDEX,
  type ClaimPartition,
  claimPk,
  nextSequence,
  orderKey,
  outboxIdOf,
  outboxPk,
  outboxStatusPk,
  timeKey,
} from './keys.js'
import { assertItemFits, type Item, itemBytes, N, num, requiredStr, S, toOutboxEvent } from './rows.js'

/** Rounds of "insert, else read" before a row that keeps vanishing is reported. */
const MAX_ATTEMPTS = 5
/** Under contention a claim picks from a window up to 2^MAX_SPREAD times the batch it wants. */
const MAX_SPREAD = 4

/** `count` entries of `items` picked at random (all of them when there are not more). */
const sample = <T>(items: readonly T[], count: number): T[] => {
  const pool = [...items]
  for (let index = 0; index < Math.min(count, pool.length); index++) {
    const pick = index + Math.floor(Math.random() * (pool.length - index))
    ;[pool[index], pool[pick]] = [pool[pick] as T, pool[index] as T]
  }
  return pool.slice(0, count)
}

const bySeqKey = (a: Item, b: Item): number => {
  const x = a.seqKey?.S ?? ''
  const y = b.seqKey?.S ?? ''
  return x < y ? -1 : x > y ? 1 : 0
}

/** `items` in order, cut into chunks one TransactWriteItems can carry (100 actions, the size limit). */
const transactionChunks = (items: readonly Item[]): Item[][] =>
  boundedChunks(items, {
    maxItems: MAX_TRANSACTION_ACTIONS,
    maxBytes: MAX_TRANSACTION_ITEM_BYTES,
    sizeOf: itemBytes,
  })

const FENCE = '#status = :publishing AND #claimedBy = :worker'
const EXISTS = 'attribute_exists(#pk)'
const NOT_STORED = 'attribute_not_exists(#pk)'
/** The attributes that put an event in the claim index; removed when it can no longer be claimed. */
const LEAVE_DUE = '#gsi1pk, #gsi1sk, #dueAt'

/**
 * The outbox on DynamoDB. Each event is one item (`pk = ob#e#<eventId>`); two sparse,
 * sharded indexes replace the GSI on `status` that caps a naive design at one partition.
 * Every state change is one conditional UpdateItem whose condition is the state the
 * contract requires, so DynamoDB itself arbitrates races. No read ever decides a write;
 * a read after a false condition only tells "not stored" from "lease lost".
 */
export class DynamoDbOutboxRepository extends OutboxRepositoryKernel<TransactWriteItem[]> {
  readonly #db: DynamoDbContext
  /** The time part of the last order key: never goes back, so a clock set back keeps FIFO. */
  #lastOrderMs = 0
  /**
   * How contended this instance's recent claims were (0..MAX_SPREAD): raised when a claim
   * loses races, lowered by a claim that loses none. See `claimEvents`.
   */
  #spread = 0

  /** `ambient` is internal: the `store.transaction` that `createDynamoDbStore` gives both repositories. */
  constructor(options: DynamoDbStoreOptions, ambient?: AmbientTransactions<TransactWriteItem[]>) {
    const db = new DynamoDbContext(resolveOptions(options), ambient)
    super({ ...db.settings, maxEventBytes: db.options.maxEventBytes })
    this.#db = db
  }

  /** The enqueue-order key: time, then this process's sequence (docs/CONTRACT.md §4). */
  #nextOrderKey(nowMs: number): string {
    this.#lastOrderMs = Math.max(nowMs, this.#lastOrderMs)
    return orderKey(this.#lastOrderMs, nextSequence())
  }

  /** The item of a new event; PayloadTooLargeError (before any I/O) when it cannot fit. */
  #newItem(params: NewOutboxEventParams, nowMs: number): Item {
    const shard = this.#db.shardOf(params.eventId)
    const availableAt = params.availableAt.getTime()
    const key = this.#nextOrderKey(nowMs)
    const ready = availableAt <= nowMs
    const item: Item = {
      pk: S(outboxPk(params.eventId)),
      eventId: S(params.eventId),
      subject: S(params.subject),
      payload: S(params.payload),
      status: S('pending'),
      enqueuedAt: N(nowMs),
      retryCount: N(0),
      availableAt: N(availableAt),
      seqKey: S(key),
      dueAt: N(availableAt),
      gsi1pk: S(claimPk(ready ? 'ready' : 'timed', shard)),
      gsi1sk: S(ready ? key : timeKey(availableAt)),
      gsi2pk: S(outboxStatusPk('pending', shard)),
      gsi2sk: S(key),
    }
    if (params.headers !== undefined) item.headers = S(params.headers)
    assertItemFits(item, params.eventId)
    return item
  }

  protected async insertEvents(
    events: readonly NewOutboxEventParams[],
    now: Date,
    tx: TransactWriteItem[] | undefined,
  ): Promise<ReadonlyMap<string, OutboxEvent>> {
    // Order keys follow input order; every item is built (and size-checked) before any I/O.
    const items = events.map((event) => this.#newItem(event, now.getTime()))
    let stored: OutboxEvent[]
    if (tx) {
      this.#db.checkCollector(
        tx,
        items.map((item) => item.pk?.S ?? ''),
      )
      stored = await this.#enlist(tx, items)
    } else if (this.#db.options.batchEnqueue === 'transaction' && items.length > 1) {
      stored = await this.#insertInTransactions(items)
    } else {
      // BatchWriteItem cannot be conditional, so it would overwrite stored events: each new
      // event is its own conditional put, in parallel (single-rate WCU, one request each).
      stored = await mapLimit(items, WRITE_CONCURRENCY, (item) => this.#insert(item))
    }
    return new Map(stored.map((event) => [event.eventId, event]))
  }

  /** Inserts unless the id is stored; returns what is stored either way. */
  async #insert(item: Item): Promise<OutboxEvent> {
    const pk = item.pk?.S ?? ''
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (await this.#db.put(item, NOT_STORED)) return toOutboxEvent(item)
      // The id is stored: first write wins. A strongly consistent read returns it.
      const stored = await this.#db.get(pk)
      if (stored) return toOutboxEvent(stored)
      // Deleted (cleanup) between the two calls: try the insert again.
    }
    throw new DynamoDbFailure('conflict', true, `event ${pk} was deleted repeatedly while being created`)
  }

  /**
   * Inserts the events not stored yet, up to 100 (and ~3.5 MB) per TransactWriteItems of
   * conditional puts: one request per chunk instead of one per event. A stored id cancels
   * its chunk, whose cancellation reasons return the stored item (ALL_OLD), so the next
   * round puts only the others. Rounds that keep losing (other transactions on the same
   * items) end in the per-event path, which always makes progress.
   */
  async #insertInTransactions(items: readonly Item[]): Promise<OutboxEvent[]> {
    const found = new Map<string, OutboxEvent>()
    const leftover: Item[] = []
    for (const chunk of transactionChunks(items)) {
      let pending = chunk
      // A single put needs no transaction: the per-event path takes it.
      for (let attempt = 0; pending.length > 1 && attempt < MAX_ATTEMPTS; attempt++) {
        const cancelled = await this.#db.putAllNew(pending, NOT_STORED)
        if (!cancelled) {
          for (const item of pending) found.set(requiredStr(item, 'eventId'), toOutboxEvent(item))
          pending = []
          break
        }
        const next: Item[] = []
        cancelled.forEach((put, index) => {
          const item = pending[index] as Item
          if (put.outcome === 'retry') next.push(item)
          else if (put.item) found.set(requiredStr(item, 'eventId'), toOutboxEvent(put.item))
          // Stored, but no item came back: the per-event path reads it.
          else leftover.push(item)
        })
        // Only a lost race leaves nothing stored in a cancelled chunk: wait before the retry.
        if (next.length === pending.length) await backoff(attempt + 1)
        pending = next
      }
      leftover.push(...pending)
    }
    const rest = await mapLimit(leftover, WRITE_CONCURRENCY, (item) => this.#insert(item))
    for (const event of rest) found.set(event.eventId, event)
    return items.map((item) => found.get(requiredStr(item, 'eventId')) as OutboxEvent)
  }

  /**
   * Appends a conditional Put per event not yet stored to the caller's collector and returns
   * the events as they will be stored. A stored id is returned as stored and adds no action,
   * like outside a transaction. An id created by someone else between this read and the
   * caller's commit cancels the caller's transaction with reason ConditionalCheckFailed at
   * that action's index: the transaction never overwrites an event.
   */
  async #enlist(tx: TransactWriteItem[], items: Item[]): Promise<OutboxEvent[]> {
    const stored = await this.#db.batchGet(items.map((item) => item.pk?.S ?? ''))
    const fresh = items.filter((item) => !stored.has(item.pk?.S ?? ''))
    // Checked again now: other calls may have added actions to the collector meanwhile.
    this.#db.checkCollector(
      tx,
      fresh.map((item) => item.pk?.S ?? ''),
    )
    for (const item of fresh) tx.push(this.#db.putAction(item, NOT_STORED))
    return items.map((item) => toOutboxEvent(stored.get(item.pk?.S ?? '') ?? item))
  }

  /** The condition and values of a write fenced by `workerId` (without it, the event only has to exist). */
  #fenced(spec: UpdateSpec, workerId: string | undefined): UpdateSpec {
    const values: Values = { ...spec.values, ':publishing': S('publishing') }
    if (workerId !== undefined) values[':worker'] = S(workerId)
    return { update: spec.update, condition: workerId === undefined ? EXISTS : FENCE, values }
  }

  protected async applyFenced(
    eventId: string,
    change: OutboxChange,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    const pk = outboxPk(eventId)
    if (await this.#db.update(pk, this.#fenced(this.#changeSpec(eventId, change), workerId))) return 'applied'
    // A false condition is told apart afterwards: a missing item, or a lease lost.
    return (await this.#db.exists(pk)) ? 'lost' : 'missing'
  }

  #changeSpec(eventId: string, change: OutboxChange): UpdateSpec {
    const shard = this.#db.shardOf(eventId)
    if (change.status === 'sent') return this.#sentSpec(eventId, change.sentAt.getTime())
    if (change.status === 'failed') {
      return {
        // Dead letters are listed in enqueue order, so their status entry sorts by seqKey.
        update:
          'SET #status = :failed, #errorMessage = :msg, #retryCount = #retryCount + :one, #gsi2pk = :g2pk, #gsi2sk = #seqKey' +
          ` REMOVE #claimedBy, #leaseUntil, ${LEAVE_DUE}, #expiresAt`,
        values: {
          ':failed': S('failed'),
          ':msg': S(change.errorMessage),
          ':one': N(1),
          ':g2pk': S(outboxStatusPk('failed', shard)),
        },
      }
    }
    // Due now: back into `ready` at its enqueue position. Backoff: into `timed` until then.
    const availableAt = change.availableAt.getTime()
    const ready = availableAt <= change.now.getTime()
    return {
      update:
        'SET #status = :pending, #retryCount = #retryCount + :one, #errorMessage = :msg, #availableAt = :available,' +
        ` #dueAt = :available, #gsi1pk = :g1pk, #gsi1sk = ${ready ? '#seqKey' : ':g1sk'}, #gsi2pk = :g2pk, #gsi2sk = #seqKey` +
        ' REMOVE #claimedBy, #leaseUntil, #expiresAt',
      values: {
        ':pending': S('pending'),
        ':one': N(1),
        ':msg': S(change.errorMessage),
        ':available': N(availableAt),
        ':g1pk': S(claimPk(ready ? 'ready' : 'timed', shard)),
        ...(ready ? {} : { ':g1sk': S(timeKey(availableAt)) }),
        ':g2pk': S(outboxStatusPk('pending', shard)),
      },
    }
  }

  /** Leaves for `sent`: out of the claim index, into `ob#sent#<shard>` by sentAt. */
  #sentSpec(eventId: string, nowMs: number): UpdateSpec {
    const statusPk = outboxStatusPk('sent', this.#db.shardOf(eventId))
    return this.#db.finalSpec('sent', 'sentAt', statusPk, nowMs, `#claimedBy, #leaseUntil, ${LEAVE_DUE}`)
  }

  protected async setPublishing(eventId: string, now: Date): Promise<boolean> {
    const nowMs = now.getTime()
    const pk = outboxPk(eventId)
    const values: Values = {
      ':publishing': S('publishing'),
      ':now': N(nowMs),
      ':g2pk': S(outboxStatusPk('publishing', this.#db.shardOf(eventId))),
      ':g2sk': S(timeKey(nowMs)),
    }
    const set = '#status = :publishing, #claimedAt = :now, #gsi2pk = :g2pk, #gsi2sk = :g2sk'
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      // claimedBy/leaseUntil stay as they are. A leased event is already in the timed
      // partition of the claim index (reclaimable when the lease expires) and stays there;
      // one without a lease must leave the index, since only resetStale may free an event
      // marked publishing by hand. Which case applies is part of each write's condition,
      // so a concurrent claim cannot slip in between.
      const leased = await this.#db.update(pk, {
        update: `SET ${set} REMOVE #expiresAt`,
        condition: 'attribute_exists(#leaseUntil)',
        values,
      })
      if (leased) return true
      const unleased = await this.#db.update(pk, {
        update: `SET ${set} REMOVE ${LEAVE_DUE}, #expiresAt`,
        condition: `${EXISTS} AND attribute_not_exists(#leaseUntil)`,
        values,
      })
      if (unleased) return true
      if (!(await this.#db.exists(pk))) return false
    }
    throw new DynamoDbFailure('conflict', true, `event ${pk} kept changing; try again`)
  }

  /**
   * Claimable index entries (with `pendingOnly`, pending-due ones), the first `window` in
   * enqueue order: the head of `ready` plus the due range of `timed`, merged by the
   * projected seqKey. Exact whenever no more than `window` delayed, retried or lease-expired
   * events are due at once; beyond that the earliest-due of them come first. With `sampling`
   * the window only needs to be a wide slice of the head, so each shard reads its share of it.
   */
  async #claimable(
    nowMs: number,
    window: number,
    skip: ReadonlySet<string>,
    pendingOnly: boolean,
    sampling = false,
  ): Promise<Item[]> {
    const now = N(nowMs)
    const perShard = sampling ? Math.ceil(window / this.#db.options.shards) : window
    const query = (name: ClaimPartition, range: { skBelow?: string; filter?: string; values?: Values }) =>
      this.#db.firstAcrossShards(
        (shard) => ({
          index: CLAIM_INDEX,
          pkName: 'gsi1pk',
          pk: claimPk(name, shard),
          skName: 'gsi1sk',
          ...range,
        }),
        window,
        skip,
        perShard,
      )
    const parts = await Promise.all([
      // `ready` holds events due when written; the filter only guards a clock set back.
      query('ready', { filter: '#dueAt <= :now', values: { ':now': now } }),
      query('timed', {
        skBelow: timeKey(nowMs + 1),
        ...(pendingOnly ? { filter: '#status = :pending', values: { ':pending': S('pending') } } : {}),
      }),
    ])
    return parts.flat().sort(bySeqKey).slice(0, window)
  }

  protected async selectPending(now: Date, limit: number): Promise<OutboxEvent[]> {
    const nowMs = now.getTime()
    const entries = await this.#claimable(nowMs, limit, new Set(), true)
    const items = await this.#db.confirm(
      entries,
      (item) => item.status?.S === 'pending' && (num(item, 'availableAt') ?? Infinity) <= nowMs,
    )
    return items.map(toOutboxEvent)
  }

  protected deleteSent(cutoff: Date, limit: number): Promise<number> {
    return this.#db.deleteBefore((shard) => outboxStatusPk('sent', shard), 'sent', 'sentAt', cutoff, limit)
  }

  protected async resetPublishing(cutoff: Date, _now: Date, limit: number): Promise<number> {
    const cutoffMs = cutoff.getTime()
    return this.#db.sweep(
      (shard) => outboxStatusPk('publishing', shard),
      cutoffMs,
      limit,
      async (entry) => {
        const pk = requiredStr(entry, 'pk')
        const shard = this.#db.shardOf(outboxIdOf(pk))
        // availableAt is projected into the status index: the event goes back to the
        // `timed` partition keyed by it (due already, so the next claim sees it). The
        // condition re-checks claimedAt (only claim time counts) and that availableAt is
        // the value read, so an event claimed or retried since keeps its new state.
        const availableAt = num(entry, 'availableAt') ?? num((await this.#db.get(pk)) ?? {}, 'availableAt')
        if (availableAt === undefined) return false
        const reset = await this.#db.update(pk, {
          update:
            'SET #status = :pending, #gsi1pk = :g1pk, #gsi1sk = :g1sk, #dueAt = #availableAt, #gsi2pk = :g2pk,' +
            ' #gsi2sk = #seqKey REMOVE #claimedBy, #leaseUntil, #expiresAt',
          condition: '#status = :publishing AND #claimedAt < :cutoff AND #availableAt = :available',
          values: {
            ':pending': S('pending'),
            ':publishing': S('publishing'),
            ':cutoff': N(cutoffMs),
            ':available': N(availableAt),
            ':g1pk': S(claimPk('timed', shard)),
            ':g1sk': S(timeKey(availableAt)),
            ':g2pk': S(outboxStatusPk('pending', shard)),
          },
        })
        return reset !== undefined
      },
    )
  }

  protected countStatuses(): Promise<StatusCountRows> {
    return this.#db.countStatuses(OUTBOX_STATUSES, outboxStatusPk)
  }

  protected async claimEvents({ now, leaseUntil, workerId, limit }: ClaimRequest): Promise<OutboxEvent[]> {
    const nowMs = now.getTime()
    const leaseMs = leaseUntil.getTime()
    const claimed: Item[] = []
    const tried = new Set<string>()
    let lost = 0
    while (claimed.length < limit) {
      const want = limit - claimed.length
      // Candidates come from the eventually consistent claim index in enqueue order; the
      // index only proposes. The conditional UpdateItem is the truth: it takes the item
      // only if it is still pending and due, or publishing with an expired lease, at the
      // moment of the write. Of N racing claimers at most one condition holds, because the
      // winner's write makes leaseUntil > now. A loser simply moves on to other candidates.
      //
      // Uncontended (spread 0) a claim takes exactly the first `want` claimable events.
      // When this instance has been losing races, every claimer is chasing the same head
      // of the queue, so it picks `want` at random from a window 2^spread times larger:
      // claimers spread out instead of all losing the same writes (each costs a WCU).
      const window = Math.min(1_000, want * 2 ** this.#spread)
      const candidates = await this.#claimable(nowMs, window, tried, false, window > want)
      if (candidates.length === 0) break
      const chosen = candidates.length > want ? sample(candidates, want) : candidates
      const taken = await mapLimit(chosen, WRITE_CONCURRENCY, (candidate) => {
        const pk = requiredStr(candidate, 'pk')
        const shard = this.#db.shardOf(outboxIdOf(pk))
        tried.add(pk)
        return this.#db.update(pk, {
          update:
            'SET #status = :publishing, #claimedBy = :worker, #claimedAt = :now, #leaseUntil = :lease,' +
            ' #dueAt = :lease, #gsi1pk = :g1pk, #gsi1sk = :g1sk, #gsi2pk = :g2pk, #gsi2sk = :g2sk',
          condition:
            '(#status = :pending AND #availableAt <= :now) OR (#status = :publishing AND #leaseUntil <= :now)',
          values: {
            ':publishing': S('publishing'),
            ':pending': S('pending'),
            ':worker': S(workerId),
            ':now': N(nowMs),
            ':lease': N(leaseMs),
            ':g1pk': S(claimPk('timed', shard)),
            ':g1sk': S(timeKey(leaseMs)),
            ':g2pk': S(outboxStatusPk('publishing', shard)),
            ':g2sk': S(timeKey(nowMs)),
          },
        })
      })
      for (const item of taken) if (item) claimed.push(item)
      const lostNow = taken.filter((item) => item === undefined).length
      if (lostNow > 0) this.#spread = Math.min(MAX_SPREAD, this.#spread + 1)
      lost += lostNow
    }
    if (lost === 0 && this.#spread > 0) this.#spread--
    return claimed.sort(bySeqKey).map(toOutboxEvent)
  }

  protected async renewLeases(
    eventIds: readonly string[],
    workerId: string,
    leaseUntil: Date,
  ): Promise<string[]> {
    const leaseMs = leaseUntil.getTime()
    const renewed = await mapLimit(eventIds, WRITE_CONCURRENCY, (id) =>
      this.#db.update(outboxPk(id), {
        update: 'SET #leaseUntil = :lease, #dueAt = :lease, #gsi1pk = :g1pk, #gsi1sk = :g1sk',
        condition: FENCE,
        values: {
          ':lease': N(leaseMs),
          ':publishing': S('publishing'),
          ':worker': S(workerId),
          ':g1pk': S(claimPk('timed', this.#db.shardOf(id))),
          ':g1sk': S(timeKey(leaseMs)),
        },
      }),
    )
    return eventIds.filter((_, index) => renewed[index] !== undefined)
  }

  protected async markSent(
    eventIds: readonly string[],
    workerId: string | undefined,
    now: Date,
  ): Promise<string[]> {
    // One conditional write per id (DynamoDB has no conditional batch); a false condition
    // is the answer "not applied" for that id, whether the lease was lost or the id is unknown.
    const applied = await mapLimit(eventIds, WRITE_CONCURRENCY, (id) =>
      this.#db.update(outboxPk(id), this.#fenced(this.#sentSpec(id, now.getTime()), workerId)),
    )
    return eventIds.filter((_, index) => applied[index] !== undefined)
  }

  protected async requeue(eventIds: readonly string[], now: Date): Promise<RequeueOutcome> {
    const outcomes = await mapLimit(eventIds, WRITE_CONCURRENCY, async (id) => {
      const shard = this.#db.shardOf(id)
      const pk = outboxPk(id)
      const moved = await this.#db.update(pk, {
        update:
          'SET #status = :pending, #availableAt = :now, #dueAt = :now, #retryCount = :zero, #gsi1pk = :g1pk,' +
          ' #gsi1sk = #seqKey, #gsi2pk = :g2pk, #gsi2sk = #seqKey REMOVE #claimedBy, #leaseUntil, #expiresAt',
        condition: '#status = :failed',
        values: {
          ':pending': S('pending'),
          ':failed': S('failed'),
          ':now': N(now.getTime()),
          ':zero': N(0),
          ':g1pk': S(claimPk('ready', shard)),
          ':g2pk': S(outboxStatusPk('pending', shard)),
        },
      })
      if (moved) return 'moved'
      return (await this.#db.exists(pk)) ? 'other' : 'missing'
    })
    return {
      requeued: outcomes.filter((outcome) => outcome === 'moved').length,
      missing: eventIds.filter((_, index) => outcomes[index] === 'missing'),
    }
  }

  protected async selectFailed(limit: number): Promise<OutboxEvent[]> {
    return (await this.#db.failedItems((shard) => outboxStatusPk('failed', shard), limit)).map(toOutboxEvent)
  }

  protected async read(eventId: string): Promise<OutboxEvent | null> {
    const item = await this.#db.get(outboxPk(eventId))
    return item ? toOutboxEvent(item) : null
  }
}
