import type { TransactWriteItem } from '@aws-sdk/client-dynamodb'
import {
  assertEventFits,
  type ClaimOptions,
  cutoffDays,
  cutoffMinutes,
  type EnqueueParams,
  EventNotFoundError,
  type FenceOptions,
  LeaseLostError,
  OUTBOX_STATUSES,
  type OutboxCounts,
  type OutboxEvent,
  type OutboxRepository,
  type OutboxStatus,
  outboxCounts,
  PayloadTooLargeError,
  type RenewLeaseOptions,
  type RetryLaterOptions,
  StorageError,
  Validator,
  type WriteOptions,
  withStorageErrors,
} from '@txbox/core'
import { checkCollector, collectorOf } from './collector.js'
import {
  ADAPTER,
  type DynamoStoreOptions,
  expiresAt,
  type ResolvedOptions,
  resolveOptions,
} from './dynamodb-options.js'
import {
  date,
  type Item,
  itemBytes,
  MAX_ITEM_BYTES,
  N,
  num,
  RESERVED_BYTES,
  requiredNum,
  requiredStr,
  S,
  str,
} from './items.js'
import {
  CLAIM_INDEX,
  type ClaimPartition,
  claimPk,
  nextSequence,
  orderKey,
  outboxIdOf,
  outboxPk,
  outboxStatusPk,
  STATUS_INDEX,
  shardOf,
  timeKey,
} from './keys.js'
import { countAcrossShards, firstAcrossShards, forEachPageAcrossShards } from './sharded-index.js'
import { mapLimit, type QuerySpec, type UpdateSpec, type Values } from './table-client.js'

/** Conditional writes in flight at once for one bulk call (claim, markManyAsSent...). */
const WRITE_CONCURRENCY = 16
/** Index entries read per page by cleanup and resetStale: their bounded batch. */
const MAINTENANCE_PAGE = 1_000
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

/** The event an outbox item stores (index keys and bookkeeping left out). */
export const toOutboxEvent = (item: Item): OutboxEvent => {
  const event: OutboxEvent = {
    eventId: requiredStr(item, 'eventId'),
    subject: requiredStr(item, 'subject'),
    payload: requiredStr(item, 'payload'),
    status: requiredStr(item, 'status') as OutboxStatus,
    enqueuedAt: new Date(requiredNum(item, 'enqueuedAt')),
    retryCount: requiredNum(item, 'retryCount'),
    availableAt: new Date(requiredNum(item, 'availableAt')),
  }
  const headers = str(item, 'headers')
  if (headers !== undefined) event.headers = headers
  const sentAt = date(item, 'sentAt')
  if (sentAt !== undefined) event.sentAt = sentAt
  const errorMessage = str(item, 'errorMessage')
  if (errorMessage !== undefined) event.errorMessage = errorMessage
  const claimedAt = date(item, 'claimedAt')
  if (claimedAt !== undefined) event.claimedAt = claimedAt
  const claimedBy = str(item, 'claimedBy')
  if (claimedBy !== undefined) event.claimedBy = claimedBy
  const leaseUntil = date(item, 'leaseUntil')
  if (leaseUntil !== undefined) event.leaseUntil = leaseUntil
  return event
}

const bySeqKey = (a: Item, b: Item): number => {
  const x = a.seqKey?.S ?? ''
  const y = b.seqKey?.S ?? ''
  return x < y ? -1 : x > y ? 1 : 0
}

const FENCE = '#status = :publishing AND #claimedBy = :worker'
const EXISTS = 'attribute_exists(#pk)'
/** The attributes that put an event in the claim index; removed when it can no longer be claimed. */
const LEAVE_DUE = '#gsi1pk, #gsi1sk, #dueAt'

/**
 * The outbox on DynamoDB. Each event is one item (`pk = ob#e#<eventId>`); two sparse,
 * sharded indexes replace the GSI on `status` that caps a naive design at one partition.
 * Every state change is one conditional UpdateItem whose condition is the state the
 * contract requires, so DynamoDB itself arbitrates races. No read ever decides a write;
 * a read after a false condition only tells "not stored" from "lease lost".
 */
export class DynamoOutboxRepository implements OutboxRepository<TransactWriteItem[]> {
  readonly #options: ResolvedOptions
  readonly #validate = new Validator(ADAPTER, 'outbox')
  /** The time part of the last order key: never goes back, so a clock set back keeps FIFO. */
  #lastOrderMs = 0
  /**
   * How contended this instance's recent claims were (0..MAX_SPREAD): raised when a claim
   * loses races, lowered by a claim that loses none. See `claim`.
   */
  #spread = 0

  constructor(options: DynamoStoreOptions) {
    this.#options = resolveOptions(options)
  }

  /** The largest event accepted, in NATS message bytes (the `maxEventBytes` option). */
  get maxEventBytes(): number {
    return this.#options.maxEventBytes
  }

  get #table() {
    return this.#options.table
  }

  #run<T>(operation: string, run: () => Promise<T>): Promise<T> {
    return withStorageErrors(ADAPTER, `outbox.${operation}`, run)
  }

  #shard(eventId: string): number {
    return shardOf(eventId, this.#options.shards)
  }

  #now(): number {
    return this.#options.clock().getTime()
  }

  /** The enqueue-order key: time, then this process's sequence (docs/CONTRACT.md §4). */
  #nextOrderKey(nowMs: number): string {
    this.#lastOrderMs = Math.max(nowMs, this.#lastOrderMs)
    return orderKey(this.#lastOrderMs, nextSequence())
  }

  /** The item of a new event; PayloadTooLargeError (before any I/O) when it cannot fit. */
  #newItem(params: EnqueueParams, nowMs: number): Item {
    const shard = this.#shard(params.eventId)
    const availableAt = params.availableAt?.getTime() ?? nowMs
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
    const size = itemBytes(item) + RESERVED_BYTES
    if (size > MAX_ITEM_BYTES) throw new PayloadTooLargeError(ADAPTER, params.eventId, size, MAX_ITEM_BYTES)
    return item
  }

  async findOrCreate(
    params: EnqueueParams,
    options?: WriteOptions<TransactWriteItem[]>,
  ): Promise<OutboxEvent> {
    const valid = this.#validate.enqueueParams(params)
    assertEventFits(ADAPTER, valid, this.maxEventBytes)
    const tx = collectorOf(options)
    const item = this.#newItem(valid, this.#now())
    const pk = outboxPk(valid.eventId)
    if (tx) checkCollector(tx, this.#options.tableName, [pk])
    return this.#run('findOrCreate', async () =>
      tx ? (await this.#enlist(tx, [item]))[0]! : this.#insert(item),
    )
  }

  async findOrCreateMany(
    params: readonly EnqueueParams[],
    options?: WriteOptions<TransactWriteItem[]>,
  ): Promise<OutboxEvent[]> {
    const valid = this.#validate.enqueueParamsList(params)
    for (const event of valid) assertEventFits(ADAPTER, event, this.maxEventBytes)
    const tx = collectorOf(options)
    if (valid.length === 0) return []
    const nowMs = this.#now()
    // First occurrence wins inside the batch; order keys follow input order.
    const firstIndex = new Map<string, number>()
    const items: Item[] = []
    for (const event of valid) {
      if (firstIndex.has(event.eventId)) continue
      firstIndex.set(event.eventId, items.length)
      items.push(this.#newItem(event, nowMs))
    }
    if (tx) {
      checkCollector(
        tx,
        this.#options.tableName,
        items.map((item) => item.pk?.S ?? ''),
      )
    }
    return this.#run('findOrCreateMany', async () => {
      // BatchWriteItem cannot be conditional, so it would overwrite stored events: each new
      // event is its own conditional put, in parallel. Same WCU as a batch, and unlike a
      // TransactWriteItems chunk one stored id does not cancel its 99 neighbours.
      const results = tx
        ? await this.#enlist(tx, items)
        : await mapLimit(items, WRITE_CONCURRENCY, (item) => this.#insert(item))
      return valid.map((event) => results[firstIndex.get(event.eventId) ?? 0]!)
    })
  }

  /** Inserts unless the id is stored; returns what is stored either way. */
  async #insert(item: Item): Promise<OutboxEvent> {
    const pk = item.pk?.S ?? ''
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (await this.#table.put(item, 'attribute_not_exists(#pk)')) return toOutboxEvent(item)
      // The id is stored: first write wins. A strongly consistent read returns it.
      const stored = await this.#table.get(pk)
      if (stored) return toOutboxEvent(stored)
      // Deleted (cleanup) between the two calls: try the insert again.
    }
    throw new StorageError(
      ADAPTER,
      'outbox.findOrCreate',
      undefined,
      `event ${pk} was deleted repeatedly while being created`,
    )
  }

  /**
   * Appends a conditional Put per event not yet stored to the caller's collector and returns
   * the events as they will be stored. A stored id is returned as stored and adds no action,
   * like outside a transaction. An id created by someone else between this read and the
   * caller's commit cancels the caller's transaction with reason ConditionalCheckFailed at
   * that action's index: the transaction never overwrites an event.
   */
  async #enlist(tx: TransactWriteItem[], items: Item[]): Promise<OutboxEvent[]> {
    const stored = await this.#table.batchGet(items.map((item) => item.pk?.S ?? ''))
    const fresh = items.filter((item) => !stored.has(item.pk?.S ?? ''))
    // Checked again now: other calls may have added actions to the collector meanwhile.
    checkCollector(
      tx,
      this.#options.tableName,
      fresh.map((item) => item.pk?.S ?? ''),
    )
    for (const item of fresh) tx.push(this.#table.putAction(item, 'attribute_not_exists(#pk)'))
    return items.map((item) => toOutboxEvent(stored.get(item.pk?.S ?? '') ?? item))
  }

  /**
   * A fenced or unfenced write. Without `workerId` the event only has to exist; with it,
   * the worker must hold the claim. A false condition is told apart afterwards: a missing
   * item is EventNotFoundError, a present one LeaseLostError.
   */
  async #fencedUpdate(eventId: string, workerId: string | undefined, spec: UpdateSpec): Promise<void> {
    const pk = outboxPk(eventId)
    const values: Values = { ...spec.values, ':publishing': S('publishing') }
    if (workerId !== undefined) values[':worker'] = S(workerId)
    const updated = await this.#table.update(pk, {
      update: spec.update,
      condition: workerId === undefined ? EXISTS : FENCE,
      values,
    })
    if (updated) return
    if (!(await this.#table.get(pk, '#pk'))) throw new EventNotFoundError(ADAPTER, eventId)
    throw new LeaseLostError(ADAPTER, eventId, workerId ?? '')
  }

  /** Leaves for `sent`: out of the claim index, into `ob#sent#<shard>` by sentAt. */
  #sentSpec(eventId: string, nowMs: number): UpdateSpec {
    const expires = expiresAt(this.#options, nowMs)
    const values: Values = {
      ':sent': S('sent'),
      ':now': N(nowMs),
      ':g2pk': S(outboxStatusPk('sent', this.#shard(eventId))),
      ':g2sk': S(timeKey(nowMs)),
    }
    if (expires !== undefined) values[':exp'] = N(expires)
    const set = '#status = :sent, #sentAt = :now, #gsi2pk = :g2pk, #gsi2sk = :g2sk'
    return {
      update:
        expires === undefined
          ? `SET ${set} REMOVE #claimedBy, #leaseUntil, ${LEAVE_DUE}, #expiresAt`
          : `SET ${set}, #expiresAt = :exp REMOVE #claimedBy, #leaseUntil, ${LEAVE_DUE}`,
      values,
    }
  }

  async markAsPublishing(eventId: string): Promise<void> {
    const id = this.#validate.eventId(eventId)
    return this.#run('markAsPublishing', async () => {
      const nowMs = this.#now()
      const shard = this.#shard(id)
      const pk = outboxPk(id)
      const values: Values = {
        ':publishing': S('publishing'),
        ':now': N(nowMs),
        ':g2pk': S(outboxStatusPk('publishing', shard)),
        ':g2sk': S(timeKey(nowMs)),
      }
      const set = '#status = :publishing, #claimedAt = :now, #gsi2pk = :g2pk, #gsi2sk = :g2sk'
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        // claimedBy/leaseUntil stay as they are. A leased event is already in the timed
        // partition of the claim index (reclaimable when the lease expires) and stays there;
        // one without a lease must leave the index, since only resetStale may free an event
        // marked publishing by hand. Which case applies is part of each write's condition,
        // so a concurrent claim cannot slip in between.
        const leased = await this.#table.update(pk, {
          update: `SET ${set} REMOVE #expiresAt`,
          condition: 'attribute_exists(#leaseUntil)',
          values,
        })
        if (leased) return
        const unleased = await this.#table.update(pk, {
          update: `SET ${set} REMOVE ${LEAVE_DUE}, #expiresAt`,
          condition: `${EXISTS} AND attribute_not_exists(#leaseUntil)`,
          values,
        })
        if (unleased) return
        if (!(await this.#table.get(pk, '#pk'))) throw new EventNotFoundError(ADAPTER, id)
      }
      throw new StorageError(
        ADAPTER,
        'outbox.markAsPublishing',
        undefined,
        `event ${pk} kept changing; try again`,
      )
    })
  }

  async markAsSent(eventId: string, options?: FenceOptions): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const workerId = this.#validate.fence(options)
    return this.#run('markAsSent', () => this.#fencedUpdate(id, workerId, this.#sentSpec(id, this.#now())))
  }

  async markAsFailed(eventId: string, errorMessage: string, options?: FenceOptions): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const message = this.#validate.text(errorMessage, 'errorMessage')
    const workerId = this.#validate.fence(options)
    return this.#run('markAsFailed', () =>
      this.#fencedUpdate(id, workerId, {
        // Dead letters are listed in enqueue order, so their status entry sorts by seqKey.
        update:
          'SET #status = :failed, #errorMessage = :msg, #retryCount = #retryCount + :one, #gsi2pk = :g2pk, #gsi2sk = #seqKey' +
          ` REMOVE #claimedBy, #leaseUntil, ${LEAVE_DUE}, #expiresAt`,
        values: {
          ':failed': S('failed'),
          ':msg': S(message),
          ':one': N(1),
          ':g2pk': S(outboxStatusPk('failed', this.#shard(id))),
        },
      }),
    )
  }

  async retryLater(eventId: string, options: RetryLaterOptions): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const { errorMessage, delayMs, workerId } = this.#validate.retryLaterOptions(options)
    return this.#run('retryLater', () => {
      const shard = this.#shard(id)
      const availableAt = this.#now() + delayMs
      // Due now: back into `ready` at its enqueue position. Backoff: into `timed` until then.
      const partition: ClaimPartition = delayMs === 0 ? 'ready' : 'timed'
      return this.#fencedUpdate(id, workerId, {
        update:
          'SET #status = :pending, #retryCount = #retryCount + :one, #errorMessage = :msg, #availableAt = :available,' +
          ` #dueAt = :available, #gsi1pk = :g1pk, #gsi1sk = ${partition === 'ready' ? '#seqKey' : ':g1sk'},` +
          ' #gsi2pk = :g2pk, #gsi2sk = #seqKey REMOVE #claimedBy, #leaseUntil, #expiresAt',
        values: {
          ':pending': S('pending'),
          ':one': N(1),
          ':msg': S(errorMessage),
          ':available': N(availableAt),
          ':g1pk': S(claimPk(partition, shard)),
          ':g1sk': S(timeKey(availableAt)),
          ':g2pk': S(outboxStatusPk('pending', shard)),
        },
      })
    })
  }

  /**
   * Claimable index entries (with `pendingOnly`, pending-due ones), the first `window` in
   * enqueue order: the head of `ready` plus the due range of `timed`, merged by the
   * projected seqKey. Exact whenever no more than `window` delayed or lease-expired events
   * are due at once; beyond that the earliest-due of them come first. With `sampling` the
   * window only needs to be a wide slice of the head, so each shard reads its share of it.
   */
  async #claimable(
    nowMs: number,
    window: number,
    skip: ReadonlySet<string>,
    pendingOnly: boolean,
    sampling = false,
  ): Promise<Item[]> {
    const { shards } = this.#options
    const now = N(nowMs)
    const query = (name: ClaimPartition, range: Partial<QuerySpec>) =>
      firstAcrossShards(
        this.#table,
        shards,
        (shard) => ({
          index: CLAIM_INDEX,
          pkName: 'gsi1pk',
          pk: claimPk(name, shard),
          skName: 'gsi1sk',
          ...range,
        }),
        window,
        skip,
        sampling ? Math.ceil(window / shards) : window,
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

  async findPending(options?: { limit?: number | undefined }): Promise<OutboxEvent[]> {
    const limit = this.#validate.limitOption(options)
    return this.#run('findPending', async () => {
      const nowMs = this.#now()
      const entries = await this.#claimable(nowMs, limit, new Set(), true)
      // The index is eventually consistent: confirm each entry on the item itself.
      const items = await this.#table.batchGet(entries.map((entry) => entry.pk?.S ?? ''))
      return entries
        .map((entry) => items.get(entry.pk?.S ?? ''))
        .filter(
          (item): item is Item =>
            item?.status?.S === 'pending' && (num(item, 'availableAt') ?? Infinity) <= nowMs,
        )
        .map(toOutboxEvent)
    })
  }

  async cleanup(olderThanDays: number): Promise<number> {
    const days = this.#validate.nonNegative(olderThanDays, 'olderThanDays')
    return this.#run('cleanup', async () => {
      const cutoff = cutoffDays(this.#options.clock(), days).getTime()
      return forEachPageAcrossShards(
        this.#table,
        this.#options.shards,
        (shard) => ({
          index: STATUS_INDEX,
          pkName: 'gsi2pk',
          pk: outboxStatusPk('sent', shard),
          skName: 'gsi2sk',
          skBelow: timeKey(Math.ceil(cutoff)),
        }),
        MAINTENANCE_PAGE,
        async (entries) => {
          // Conditional deletes rather than BatchWriteItem: the same WCU per item, and the
          // condition re-checks status and sentAt on the item, which the eventually
          // consistent index cannot promise. Cleanup never deletes an event that moved on.
          const deleted = await mapLimit(entries, WRITE_CONCURRENCY, (entry) =>
            this.#table.delete(entry.pk?.S ?? '', '#status = :sent AND #sentAt < :cutoff', {
              ':sent': S('sent'),
              ':cutoff': N(cutoff),
            }),
          )
          return deleted.filter((item) => item !== undefined).length
        },
      )
    })
  }

  async resetStale(staleMinutes: number): Promise<number> {
    const minutes = this.#validate.nonNegative(staleMinutes, 'staleMinutes')
    return this.#run('resetStale', async () => {
      const cutoff = cutoffMinutes(this.#options.clock(), minutes).getTime()
      return forEachPageAcrossShards(
        this.#table,
        this.#options.shards,
        (shard) => ({
          index: STATUS_INDEX,
          pkName: 'gsi2pk',
          pk: outboxStatusPk('publishing', shard),
          skName: 'gsi2sk',
          skBelow: timeKey(Math.ceil(cutoff)),
        }),
        MAINTENANCE_PAGE,
        async (entries) => {
          const reset = await mapLimit(entries, WRITE_CONCURRENCY, async (entry) => {
            const pk = requiredStr(entry, 'pk')
            const shard = this.#shard(outboxIdOf(pk))
            // availableAt is projected into the status index: the event goes back to the
            // `timed` partition keyed by it (due already, so the next claim sees it). The
            // condition re-checks claimedAt (only claim time counts) and that availableAt is
            // the value read, so an event claimed or retried since keeps its new state.
            const availableAt =
              num(entry, 'availableAt') ?? num((await this.#table.get(pk)) ?? {}, 'availableAt')
            if (availableAt === undefined) return undefined
            return this.#table.update(pk, {
              update:
                'SET #status = :pending, #gsi1pk = :g1pk, #gsi1sk = :g1sk, #dueAt = #availableAt, #gsi2pk = :g2pk,' +
                ' #gsi2sk = #seqKey REMOVE #claimedBy, #leaseUntil, #expiresAt',
              condition: '#status = :publishing AND #claimedAt < :cutoff AND #availableAt = :available',
              values: {
                ':pending': S('pending'),
                ':publishing': S('publishing'),
                ':cutoff': N(cutoff),
                ':available': N(availableAt),
                ':g1pk': S(claimPk('timed', shard)),
                ':g1sk': S(timeKey(availableAt)),
                ':g2pk': S(outboxStatusPk('pending', shard)),
              },
            })
          })
          return reset.filter((item) => item !== undefined).length
        },
      )
    })
  }

  async getCountByStatus(): Promise<OutboxCounts> {
    return this.#run('getCountByStatus', async () => {
      const counts = await Promise.all(
        OUTBOX_STATUSES.map(async (status) => {
          const count = await countAcrossShards(this.#table, this.#options.shards, (shard) => ({
            index: STATUS_INDEX,
            pkName: 'gsi2pk',
            pk: outboxStatusPk(status, shard),
            skName: 'gsi2sk',
          }))
          return [status, count] as const
        }),
      )
      return outboxCounts(counts)
    })
  }

  async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const { limit, leaseMs, workerId } = this.#validate.claimOptions(options)
    return this.#run('claim', async () => {
      const nowMs = this.#now()
      const leaseUntil = nowMs + leaseMs
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
          tried.add(pk)
          return this.#table.update(pk, {
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
              ':lease': N(leaseUntil),
              ':g1pk': S(claimPk('timed', this.#shard(outboxIdOf(pk)))),
              ':g1sk': S(timeKey(leaseUntil)),
              ':g2pk': S(outboxStatusPk('publishing', this.#shard(outboxIdOf(pk)))),
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
    })
  }

  async renewLease(eventIds: readonly string[], options: RenewLeaseOptions): Promise<string[]> {
    const ids = this.#validate.eventIds(eventIds)
    const { leaseMs, workerId } = this.#validate.leaseOptions(options)
    return this.#run('renewLease', async () => {
      const leaseUntil = this.#now() + leaseMs
      const renewed = await mapLimit(ids, WRITE_CONCURRENCY, (id) =>
        this.#table.update(outboxPk(id), {
          update: 'SET #leaseUntil = :lease, #dueAt = :lease, #gsi1pk = :g1pk, #gsi1sk = :g1sk',
          condition: FENCE,
          values: {
            ':lease': N(leaseUntil),
            ':publishing': S('publishing'),
            ':worker': S(workerId),
            ':g1pk': S(claimPk('timed', this.#shard(id))),
            ':g1sk': S(timeKey(leaseUntil)),
          },
        }),
      )
      return ids.filter((_, index) => renewed[index] !== undefined)
    })
  }

  async markManyAsSent(eventIds: readonly string[], options?: FenceOptions): Promise<string[]> {
    const ids = this.#validate.eventIds(eventIds)
    const workerId = this.#validate.fence(options)
    return this.#run('markManyAsSent', async () => {
      const nowMs = this.#now()
      // One conditional write per id (DynamoDB has no conditional batch); a false condition
      // is the answer "not applied" for that id, whether the lease was lost or the id is unknown.
      const applied = await mapLimit(ids, WRITE_CONCURRENCY, (id) => {
        const spec = this.#sentSpec(id, nowMs)
        const values: Values = { ...spec.values, ':publishing': S('publishing') }
        if (workerId !== undefined) values[':worker'] = S(workerId)
        return this.#table.update(outboxPk(id), {
          update: spec.update,
          condition: workerId === undefined ? EXISTS : FENCE,
          values,
        })
      })
      return ids.filter((_, index) => applied[index] === undefined)
    })
  }

  async getFailedEvents(limit?: number): Promise<OutboxEvent[]> {
    const max = this.#validate.limit(limit)
    return this.#run('getFailedEvents', async () => {
      const entries = await firstAcrossShards(
        this.#table,
        this.#options.shards,
        (shard) => ({
          index: STATUS_INDEX,
          pkName: 'gsi2pk',
          pk: outboxStatusPk('failed', shard),
          skName: 'gsi2sk',
        }),
        max,
      )
      const items = await this.#table.batchGet(entries.map((entry) => entry.pk?.S ?? ''))
      return entries
        .map((entry) => items.get(entry.pk?.S ?? ''))
        .filter((item): item is Item => item?.status?.S === 'failed')
        .map(toOutboxEvent)
    })
  }

  async requeueFailed(eventIds: readonly string[]): Promise<number> {
    const ids = this.#validate.eventIds(eventIds)
    return this.#run('requeueFailed', async () => {
      const nowMs = this.#now()
      const outcomes = await mapLimit(ids, WRITE_CONCURRENCY, async (id) => {
        const shard = this.#shard(id)
        const pk = outboxPk(id)
        const moved = await this.#table.update(pk, {
          update:
            'SET #status = :pending, #availableAt = :now, #dueAt = :now, #retryCount = :zero, #gsi1pk = :g1pk,' +
            ' #gsi1sk = #seqKey, #gsi2pk = :g2pk, #gsi2sk = #seqKey REMOVE #claimedBy, #leaseUntil, #expiresAt',
          condition: '#status = :failed',
          values: {
            ':pending': S('pending'),
            ':failed': S('failed'),
            ':now': N(nowMs),
            ':zero': N(0),
            ':g1pk': S(claimPk('ready', shard)),
            ':g2pk': S(outboxStatusPk('pending', shard)),
          },
        })
        if (moved) return 'moved'
        return (await this.#table.get(pk, '#pk')) ? 'other' : 'missing'
      })
      const missing = ids.find((_, index) => outcomes[index] === 'missing')
      if (missing !== undefined) throw new EventNotFoundError(ADAPTER, missing)
      return outcomes.filter((outcome) => outcome === 'moved').length
    })
  }

  async get(eventId: string): Promise<OutboxEvent | null> {
    const id = this.#validate.eventId(eventId)
    return this.#run('get', async () => {
      const item = await this.#table.get(outboxPk(id))
      return item ? toOutboxEvent(item) : null
    })
  }
}
