import type { TransactWriteItem } from '@aws-sdk/client-dynamodb'
import {
  cutoffDays,
  cutoffMinutes,
  EventNotFoundError,
  INBOX_STATUSES,
  type InboxClaimOptions,
  type InboxClaimResult,
  type InboxCounts,
  type InboxEvent,
  type InboxParams,
  type InboxRepository,
  type InboxStatus,
  inboxCounts,
  PayloadTooLargeError,
  PROCESSING_TIMEOUT_MESSAGE,
  StorageError,
  Validator,
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
  inboxIdOf,
  inboxPk,
  inboxStatusPk,
  nextSequence,
  orderKey,
  STATUS_INDEX,
  shardOf,
  timeKey,
} from './keys.js'
import { countAcrossShards, firstAcrossShards, forEachPageAcrossShards } from './sharded-index.js'
import { mapLimit, type UpdateSpec, type Values } from './table-client.js'

const WRITE_CONCURRENCY = 16
const MAINTENANCE_PAGE = 1_000
/** Rounds of the create-or-find loop before contention is reported as a StorageError. */
const MAX_ATTEMPTS = 20

/** The event an inbox item stores. */
export const toInboxEvent = (item: Item): InboxEvent => {
  const event: InboxEvent = {
    eventId: requiredStr(item, 'eventId'),
    subject: requiredStr(item, 'subject'),
    payload: requiredStr(item, 'payload'),
    status: requiredStr(item, 'status') as InboxStatus,
    receivedAt: new Date(requiredNum(item, 'receivedAt')),
    deliveries: requiredNum(item, 'deliveries'),
  }
  const headers = str(item, 'headers')
  if (headers !== undefined) event.headers = headers
  const stream = str(item, 'stream')
  if (stream !== undefined) event.stream = stream
  const streamSeq = num(item, 'streamSeq')
  if (streamSeq !== undefined) event.streamSeq = streamSeq
  const processedAt = date(item, 'processedAt')
  if (processedAt !== undefined) event.processedAt = processedAt
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

const NOT_STORED = 'attribute_not_exists(#pk)'
const EXISTS = 'attribute_exists(#pk)'

/** What the create-or-find step found. */
type Located = { created: Item } | { stored: string }

/**
 * The inbox on DynamoDB. Each event is one item (`pk = ib#e#<eventId>`): the event id alone
 * is the identity. `(stream, streamSeq)` is recorded, never used to merge two ids (a
 * JetStream stream re-created under its name restarts at sequence 1); a redelivery of a
 * stored id at a new position keeps the position recorded first. The sharded status index
 * (`gsi2`) serves counts, cleanup, resetStale and the dead-letter list.
 */
export class DynamoInboxRepository implements InboxRepository<TransactWriteItem[]> {
  readonly #options: ResolvedOptions
  readonly #validate = new Validator(ADAPTER, 'inbox')
  #lastOrderMs = 0

  constructor(options: DynamoStoreOptions) {
    this.#options = resolveOptions(options)
  }

  get #table() {
    return this.#options.table
  }

  #run<T>(operation: string, run: () => Promise<T>): Promise<T> {
    return withStorageErrors(ADAPTER, `inbox.${operation}`, run)
  }

  #shard(eventId: string): number {
    return shardOf(eventId, this.#options.shards)
  }

  #now(): number {
    return this.#options.clock().getTime()
  }

  /** The item of a new delivery, claimed by `lease` when given. Size-checked before any I/O. */
  #newItem(params: InboxParams, nowMs: number, lease: InboxClaimOptions | undefined): Item {
    this.#lastOrderMs = Math.max(nowMs, this.#lastOrderMs)
    const shard = this.#shard(params.eventId)
    const item: Item = {
      pk: S(inboxPk(params.eventId)),
      eventId: S(params.eventId),
      subject: S(params.subject),
      payload: S(params.payload),
      status: S('processing'),
      receivedAt: N(nowMs),
      deliveries: N(1),
      // Failed events are listed oldest received first, ties in arrival order.
      receivedKey: S(orderKey(this.#lastOrderMs, nextSequence())),
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
      item.leaseUntil = N(nowMs + lease.leaseMs)
    }
    const size = itemBytes(item) + RESERVED_BYTES
    if (size > MAX_ITEM_BYTES) throw new PayloadTooLargeError(ADAPTER, params.eventId, size, MAX_ITEM_BYTES)
    return item
  }

  /** Creates the event on the condition that its id is not stored yet, or names the stored one. */
  async #createOrLocate(item: Item, params: InboxParams): Promise<Located> {
    return (await this.#table.put(item, NOT_STORED)) ? { created: item } : { stored: params.eventId }
  }

  async findOrCreate(params: InboxParams): Promise<InboxEvent> {
    const valid = this.#validate.inboxParams(params)
    const item = this.#newItem(valid, this.#now(), undefined)
    return this.#run('findOrCreate', async () => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const located = await this.#createOrLocate(item, valid)
        if ('created' in located) return toInboxEvent(located.created)
        const bumped = await this.#table.update(inboxPk(located.stored), {
          update: 'ADD #deliveries :one',
          condition: EXISTS,
          values: { ':one': N(1) },
        })
        if (bumped) return toInboxEvent(bumped)
      }
      throw new StorageError(
        ADAPTER,
        'inbox.findOrCreate',
        undefined,
        `event ${valid.eventId} kept vanishing`,
      )
    })
  }

  async claim(params: InboxParams, options: InboxClaimOptions): Promise<InboxClaimResult> {
    const valid = this.#validate.inboxParams(params)
    const lease = this.#validate.leaseOptions(options)
    const nowMs = this.#now()
    const item = this.#newItem(valid, nowMs, lease)
    return this.#run('claim', async () => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const located = await this.#createOrLocate(item, valid)
        if ('created' in located) return { event: toInboxEvent(located.created), shouldProcess: true }
        const pk = inboxPk(located.stored)
        // Take it over if it is failed or its lease expired; the condition makes this a
        // compare-and-set, so of N callers only the first sees it takeable. A processing
        // event without a lease (the findOrCreate flow) is live until resetStale.
        const taken = await this.#table.update(pk, {
          update:
            'SET #status = :processing, #claimedBy = :worker, #claimedAt = :now, #leaseUntil = :lease,' +
            ' #gsi2pk = :g2pk, #gsi2sk = :g2sk REMOVE #errorMessage, #expiresAt ADD #deliveries :one',
          condition: '#status = :failed OR (#status = :processing AND #leaseUntil <= :now)',
          values: {
            ':processing': S('processing'),
            ':failed': S('failed'),
            ':worker': S(lease.workerId),
            ':now': N(nowMs),
            ':lease': N(nowMs + lease.leaseMs),
            ':g2pk': S(inboxStatusPk('processing', this.#shard(located.stored))),
            ':g2sk': S(timeKey(nowMs)),
            ':one': N(1),
          },
        })
        if (taken) return { event: toInboxEvent(taken), shouldProcess: true }
        // Not takeable: a duplicate. It still counts as a delivery.
        const bumped = await this.#table.update(pk, {
          update: 'ADD #deliveries :one',
          condition: EXISTS,
          values: { ':one': N(1) },
        })
        if (bumped) return { event: toInboxEvent(bumped), shouldProcess: false }
      }
      throw new StorageError(ADAPTER, 'inbox.claim', undefined, `event ${valid.eventId} kept vanishing`)
    })
  }

  #processedSpec(eventId: string, nowMs: number): UpdateSpec {
    const expires = expiresAt(this.#options, nowMs)
    const values: Values = {
      ':processed': S('processed'),
      ':now': N(nowMs),
      ':g2pk': S(inboxStatusPk('processed', this.#shard(eventId))),
      ':g2sk': S(timeKey(nowMs)),
    }
    if (expires !== undefined) values[':exp'] = N(expires)
    const set = '#status = :processed, #processedAt = :now, #gsi2pk = :g2pk, #gsi2sk = :g2sk'
    return {
      update:
        expires === undefined
          ? `SET ${set} REMOVE #claimedBy, #leaseUntil, #expiresAt`
          : `SET ${set}, #expiresAt = :exp REMOVE #claimedBy, #leaseUntil`,
      condition: EXISTS,
      values,
    }
  }

  async markAsProcessed(eventId: string, options?: { tx?: TransactWriteItem[] | undefined }): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const tx = collectorOf(options)
    const pk = inboxPk(id)
    if (tx) checkCollector(tx, this.#options.tableName, [pk])
    return this.#run('markAsProcessed', async () => {
      const spec = this.#processedSpec(id, this.#now())
      if (tx) {
        // Unknown ids fail now, like without tx, not later as a cancelled transaction. The
        // Update keeps its existence condition: an event deleted before the caller commits
        // cancels the caller's transaction (reason ConditionalCheckFailed at this action).
        if (!(await this.#table.get(pk, '#pk'))) throw new EventNotFoundError(ADAPTER, id, 'inbox')
        checkCollector(tx, this.#options.tableName, [pk])
        tx.push(this.#table.updateAction(pk, spec))
        return
      }
      if (!(await this.#table.update(pk, spec))) throw new EventNotFoundError(ADAPTER, id, 'inbox')
    })
  }

  async markAsFailed(eventId: string, errorMessage: string): Promise<void> {
    const id = this.#validate.eventId(eventId)
    const message = this.#validate.text(errorMessage, 'errorMessage')
    return this.#run('markAsFailed', async () => {
      const failed = await this.#table.update(inboxPk(id), {
        update:
          'SET #status = :failed, #errorMessage = :msg, #gsi2pk = :g2pk, #gsi2sk = #receivedKey' +
          ' REMOVE #claimedBy, #leaseUntil, #expiresAt',
        condition: EXISTS,
        values: {
          ':failed': S('failed'),
          ':msg': S(message),
          ':g2pk': S(inboxStatusPk('failed', this.#shard(id))),
        },
      })
      if (!failed) throw new EventNotFoundError(ADAPTER, id, 'inbox')
    })
  }

  async isProcessed(eventId: string): Promise<boolean> {
    const id = this.#validate.eventId(eventId)
    return this.#run('isProcessed', async () => {
      const item = await this.#table.get(inboxPk(id), '#status')
      return item?.status?.S === 'processed'
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
          pk: inboxStatusPk('processed', shard),
          skName: 'gsi2sk',
          skBelow: timeKey(Math.ceil(cutoff)),
        }),
        MAINTENANCE_PAGE,
        async (entries) => {
          const deleted = await mapLimit(entries, WRITE_CONCURRENCY, async (entry) => {
            const old = await this.#table.delete(
              entry.pk?.S ?? '',
              '#status = :processed AND #processedAt < :cutoff',
              {
                ':processed': S('processed'),
                ':cutoff': N(cutoff),
              },
            )
            return old !== undefined
          })
          return deleted.filter(Boolean).length
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
          pk: inboxStatusPk('processing', shard),
          skName: 'gsi2sk',
          skBelow: timeKey(Math.ceil(cutoff)),
        }),
        MAINTENANCE_PAGE,
        async (entries) => {
          const reset = await mapLimit(entries, WRITE_CONCURRENCY, (entry) => {
            const pk = entry.pk?.S ?? ''
            return this.#table.update(pk, {
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
                ':msg': S(PROCESSING_TIMEOUT_MESSAGE),
                ':cutoff': N(cutoff),
                ':g2pk': S(inboxStatusPk('failed', this.#shard(inboxIdOf(pk)))),
              },
            })
          })
          return reset.filter((item) => item !== undefined).length
        },
      )
    })
  }

  async getCountByStatus(): Promise<InboxCounts> {
    return this.#run('getCountByStatus', async () => {
      const counts = await Promise.all(
        INBOX_STATUSES.map(async (status) => {
          const count = await countAcrossShards(this.#table, this.#options.shards, (shard) => ({
            index: STATUS_INDEX,
            pkName: 'gsi2pk',
            pk: inboxStatusPk(status, shard),
            skName: 'gsi2sk',
          }))
          return [status, count] as const
        }),
      )
      return inboxCounts(counts)
    })
  }

  async getFailedEvents(limit?: number): Promise<InboxEvent[]> {
    const max = this.#validate.limit(limit)
    return this.#run('getFailedEvents', async () => {
      const entries = await firstAcrossShards(
        this.#table,
        this.#options.shards,
        (shard) => ({
          index: STATUS_INDEX,
          pkName: 'gsi2pk',
          pk: inboxStatusPk('failed', shard),
          skName: 'gsi2sk',
        }),
        max,
      )
      const items = await this.#table.batchGet(entries.map((entry) => entry.pk?.S ?? ''))
      return entries
        .map((entry) => items.get(entry.pk?.S ?? ''))
        .filter((item): item is Item => item?.status?.S === 'failed')
        .map(toInboxEvent)
    })
  }

  async get(eventId: string): Promise<InboxEvent | null> {
    const id = this.#validate.eventId(eventId)
    return this.#run('get', async () => {
      const item = await this.#table.get(inboxPk(id))
      return item ? toInboxEvent(item) : null
    })
  }
}
