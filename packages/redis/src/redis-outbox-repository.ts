import {
  addMs,
  assertEventFits,
  type ClaimOptions,
  type Clock,
  cutoffDays,
  cutoffMinutes,
  type EnqueueParams,
  EventNotFoundError,
  type FenceOptions,
  LeaseLostError,
  newOutboxEvent,
  type OutboxCounts,
  type OutboxEvent,
  type OutboxRepository,
  outboxCounts,
  type RenewLeaseOptions,
  type RetryLaterOptions,
  resolveMaxEventBytes,
  systemClock,
  Validator,
  type WriteOptions,
} from '@txbox/core'
import type { ChainableCommander } from 'ioredis'
import { scriptBatches } from './batches.js'
import { eventsOf, fieldsOf, fieldsOfObject, toOutboxEvent } from './codec.js'
import { ADAPTER, storage, unexpectedReply } from './errors.js'
import { DEFAULT_KEY_PREFIX, type OutboxKeys, outboxKeys } from './keys.js'
import { BATCH_SIZE, REDIS_MAX_STRING_BYTES, type RedisStoreOptions, SCAN_CAP } from './redis-options.js'
import { type RedisClient, scripts } from './scripts.js'

/** What a fenced script answers: 1 applied, 0 the event is not stored, -1 the lease is lost. */
const checkFenced = (
  reply: unknown,
  operation: string,
  eventId: string,
  workerId: string | undefined,
): void => {
  if (reply === 1) return
  if (reply === 0) throw new EventNotFoundError(ADAPTER, eventId)
  if (reply === -1 && workerId !== undefined) throw new LeaseLostError(ADAPTER, eventId, workerId)
  throw unexpectedReply(operation, reply)
}

const toIds = (reply: unknown, operation: string): string[] => {
  if (!Array.isArray(reply)) throw unexpectedReply(operation, reply)
  return reply.map(String)
}

/**
 * The outbox on Redis. Every state change is one Lua script (see scripts.ts), so it is
 * atomic against every other client; reads of a single event are plain HGETALLs.
 *
 * `{ tx }` is a `ChainableCommander` from `redis.multi()`: enqueue scripts are queued into
 * it and run when the caller calls `exec()`, all or nothing with respect to other clients
 * (MULTI/EXEC is isolated), and `discard()` (or never calling `exec()`) leaves no trace.
 */
export class RedisOutboxRepository implements OutboxRepository<ChainableCommander> {
  readonly keys: OutboxKeys
  protected readonly redis: RedisClient
  protected readonly clock: Clock
  protected readonly validate = new Validator(ADAPTER, 'outbox')
  /** The largest event accepted, in NATS message bytes (the `maxEventBytes` option). */
  readonly maxEventBytes: number

  constructor(options: RedisStoreOptions) {
    this.redis = options.redis
    this.clock = options.clock ?? systemClock
    this.maxEventBytes = resolveMaxEventBytes(ADAPTER, options.maxEventBytes, REDIS_MAX_STRING_BYTES)
    this.keys = outboxKeys(this.validate.identifier(options.keyPrefix ?? DEFAULT_KEY_PREFIX, 'keyPrefix'))
  }

  /** One event's ARGV: id, subject, payload, hasHeaders, headers, availableAt. */
  #eventArgs(params: EnqueueParams, now: Date): (string | number)[] {
    return [
      params.eventId,
      params.subject,
      params.payload,
      params.headers === undefined ? '0' : '1',
      params.headers ?? '',
      (params.availableAt ?? now).getTime(),
    ]
  }

  /** A script reply for one enqueued event: its seq when new (we know what we wrote), else the stored hash. */
  #enqueued(reply: unknown, params: EnqueueParams, now: Date, operation: string): OutboxEvent {
    if (typeof reply === 'number') return newOutboxEvent(params, now)
    if (Array.isArray(reply)) return toOutboxEvent(fieldsOf(reply))
    throw unexpectedReply(operation, reply)
  }

  // What each MULTI has queued so far, by event id: its replies come only at EXEC, so a second
  // enqueue of one id in the same MULTI must return what the first queued (first write wins at
  // EXEC), not an event built from its own, ignored, arguments.
  readonly #queuedByMulti = new WeakMap<ChainableCommander, Map<string, OutboxEvent>>()

  #queued(tx: ChainableCommander): Map<string, OutboxEvent> {
    let queued = this.#queuedByMulti.get(tx)
    if (!queued) {
      queued = new Map()
      this.#queuedByMulti.set(tx, queued)
    }
    return queued
  }

  /**
   * Without `tx`: one script inserts or returns the stored event atomically (EXISTS, INCR
   * seq, HSET, index, count), so 20 concurrent calls store one event and all return it.
   *
   * With `tx`: a MULTI cannot hand back a reply before EXEC, so the stored event is read
   * first (outside the transaction) and returned if it exists; otherwise the event as it
   * will be stored is returned. The same idempotent script is queued either way, so EXEC
   * inserts it only if it is still absent: when another client stores the same id between
   * our read and the caller's EXEC, the first write wins and what we returned may differ
   * from what is stored (same id, another payload/enqueuedAt).
   */
  async findOrCreate(
    params: EnqueueParams,
    options?: WriteOptions<ChainableCommander>,
  ): Promise<OutboxEvent> {
    const valid = this.validate.enqueueParams(params)
    assertEventFits(ADAPTER, valid, this.maxEventBytes)
    const now = this.clock()
    const keys = [...this.keys.indexKeys, this.keys.event(valid.eventId)]
    const args = [...this.#eventArgs(valid, now), now.getTime()]
    const tx = options?.tx
    if (tx) {
      const queued = this.#queued(tx)
      const earlier = queued.get(valid.eventId)
      if (earlier) return { ...earlier }
      const stored = await this.#read(valid.eventId, 'outbox.findOrCreate')
      scripts.outboxFindOrCreate.queue(tx, keys, args)
      const event = stored ?? newOutboxEvent(valid, now)
      queued.set(valid.eventId, event)
      return { ...event }
    }
    return storage('outbox.findOrCreate', async () => {
      const reply = await scripts.outboxFindOrCreate.run(this.redis, keys, args)
      return this.#enqueued(reply, valid, now, 'outbox.findOrCreate')
    })
  }

  /** One script for the whole batch (or one queued script with `tx`, see `findOrCreate`). */
  async findOrCreateMany(
    params: readonly EnqueueParams[],
    options?: WriteOptions<ChainableCommander>,
  ): Promise<OutboxEvent[]> {
    const valid = this.validate.enqueueParamsList(params)
    for (const event of valid) assertEventFits(ADAPTER, event, this.maxEventBytes)
    if (valid.length === 0) return []
    const now = this.clock()
    // The first occurrence of an id wins; later ones get what it stored.
    const unique = new Map<string, EnqueueParams>()
    for (const event of valid) if (!unique.has(event.eventId)) unique.set(event.eventId, event)
    const batch = [...unique.values()]
    const keys = [...this.keys.indexKeys, ...batch.map((event) => this.keys.event(event.eventId))]
    const args = [now.getTime(), ...batch.flatMap((event) => this.#eventArgs(event, now))]
    const byId = new Map<string, OutboxEvent>()
    const tx = options?.tx
    if (tx) {
      // Read what is stored already (outside the MULTI: its replies come only at EXEC).
      const queued = this.#queued(tx)
      await storage('outbox.findOrCreateMany', async () => {
        const pipeline = this.redis.pipeline()
        for (const event of batch) pipeline.hgetall(this.keys.event(event.eventId))
        const stored = (await pipeline.exec()) ?? []
        batch.forEach((event, index) => {
          const [error, record] = stored[index] ?? [null, {}]
          if (error) throw error
          const fields = fieldsOfObject(record as Record<string, string>)
          const earlier = queued.get(event.eventId)
          byId.set(event.eventId, earlier ?? (fields ? toOutboxEvent(fields) : newOutboxEvent(event, now)))
        })
      })
      for (const [id, event] of byId) if (!queued.has(id)) queued.set(id, event)
      scripts.outboxFindOrCreateMany.queue(tx, keys, args)
    } else {
      await storage('outbox.findOrCreateMany', async () => {
        const reply = await scripts.outboxFindOrCreateMany.run(this.redis, keys, args)
        if (!Array.isArray(reply) || reply.length !== batch.length)
          throw unexpectedReply('outbox.findOrCreateMany', reply)
        batch.forEach((event, index) => {
          byId.set(event.eventId, this.#enqueued(reply[index], event, now, 'outbox.findOrCreateMany'))
        })
      })
    }
    return valid.map((event) => ({ ...byId.get(event.eventId)! }))
  }

  async markAsPublishing(eventId: string): Promise<void> {
    const id = this.validate.eventId(eventId)
    const now = this.clock()
    const reply = await storage('outbox.markAsPublishing', () =>
      scripts.outboxMarkPublishing.run(
        this.redis,
        [...this.keys.indexKeys, this.keys.event(id)],
        [id, now.getTime()],
      ),
    )
    if (reply === 0) throw new EventNotFoundError(ADAPTER, id)
    if (reply !== 1) throw unexpectedReply('outbox.markAsPublishing', reply)
  }

  async markAsSent(eventId: string, options?: FenceOptions): Promise<void> {
    const id = this.validate.eventId(eventId)
    const workerId = this.validate.fence(options)
    const now = this.clock()
    const reply = await storage('outbox.markAsSent', () =>
      scripts.outboxMarkSent.run(
        this.redis,
        [...this.keys.indexKeys, this.keys.event(id)],
        [id, now.getTime(), workerId ?? ''],
      ),
    )
    checkFenced(reply, 'outbox.markAsSent', id, workerId)
  }

  async markAsFailed(eventId: string, errorMessage: string, options?: FenceOptions): Promise<void> {
    const id = this.validate.eventId(eventId)
    const message = this.validate.text(errorMessage, 'errorMessage')
    const workerId = this.validate.fence(options)
    const reply = await storage('outbox.markAsFailed', () =>
      scripts.outboxMarkFailed.run(
        this.redis,
        [...this.keys.indexKeys, this.keys.event(id)],
        [id, message, workerId ?? ''],
      ),
    )
    checkFenced(reply, 'outbox.markAsFailed', id, workerId)
  }

  /** Read-only: computes the due set without promoting delayed events (see OUTBOX_FIND_PENDING). */
  async findPending(options?: { limit?: number | undefined }): Promise<OutboxEvent[]> {
    const limit = this.validate.limitOption(options)
    const now = this.clock()
    return storage('outbox.findPending', async () => {
      const reply = await scripts.outboxFindPending.run(this.redis, this.keys.indexKeys, [
        now.getTime(),
        limit,
        SCAN_CAP,
      ])
      return eventsOf(reply, toOutboxEvent)
    })
  }

  /** Deletes in batches of {@link BATCH_SIZE}, one script each, until a batch comes back short. */
  async cleanup(olderThanDays: number): Promise<number> {
    const cutoff = cutoffDays(
      this.clock(),
      this.validate.nonNegative(olderThanDays, 'olderThanDays'),
    ).getTime()
    return scriptBatches('outbox.cleanup', (run) =>
      scripts.outboxCleanup.run(this.redis, this.keys.indexKeys, [cutoff, run]),
    )
  }

  async resetStale(staleMinutes: number): Promise<number> {
    const now = this.clock()
    const cutoff = cutoffMinutes(now, this.validate.nonNegative(staleMinutes, 'staleMinutes')).getTime()
    return scriptBatches('outbox.resetStale', (run) =>
      scripts.outboxResetStale.run(this.redis, this.keys.indexKeys, [cutoff, now.getTime(), run]),
    )
  }

  /** One HGETALL of the counts hash the scripts keep exact. */
  async getCountByStatus(): Promise<OutboxCounts> {
    return storage('outbox.getCountByStatus', async () =>
      outboxCounts(Object.entries(await this.redis.hgetall(this.keys.counts))),
    )
  }

  /** One script: see OUTBOX_CLAIM for why two claimers never get the same event. */
  async claim(options: ClaimOptions): Promise<OutboxEvent[]> {
    const { limit, leaseMs, workerId } = this.validate.claimOptions(options)
    const now = this.clock()
    return storage('outbox.claim', async () => {
      const reply = await scripts.outboxClaim.run(this.redis, this.keys.indexKeys, [
        now.getTime(),
        addMs(now, leaseMs).getTime(),
        workerId,
        limit,
        SCAN_CAP,
      ])
      return eventsOf(reply, toOutboxEvent)
    })
  }

  async renewLease(eventIds: readonly string[], options: RenewLeaseOptions): Promise<string[]> {
    const ids = this.validate.eventIds(eventIds)
    const { leaseMs, workerId } = this.validate.leaseOptions(options)
    if (ids.length === 0) return []
    const leaseUntil = addMs(this.clock(), leaseMs).getTime()
    return storage('outbox.renewLease', async () => {
      const reply = await scripts.outboxRenewLease.run(
        this.redis,
        [...this.keys.indexKeys, ...ids.map((id) => this.keys.event(id))],
        [leaseUntil, workerId, ...ids],
      )
      return toIds(reply, 'outbox.renewLease')
    })
  }

  async markManyAsSent(eventIds: readonly string[], options?: FenceOptions): Promise<string[]> {
    const ids = this.validate.eventIds(eventIds)
    const workerId = this.validate.fence(options)
    if (ids.length === 0) return []
    const now = this.clock()
    return storage('outbox.markManyAsSent', async () => {
      const reply = await scripts.outboxMarkManySent.run(
        this.redis,
        [...this.keys.indexKeys, ...ids.map((id) => this.keys.event(id))],
        [now.getTime(), workerId ?? '', ...ids],
      )
      return toIds(reply, 'outbox.markManyAsSent')
    })
  }

  async retryLater(eventId: string, options: RetryLaterOptions): Promise<void> {
    const id = this.validate.eventId(eventId)
    const { errorMessage, delayMs, workerId } = this.validate.retryLaterOptions(options)
    const now = this.clock()
    const reply = await storage('outbox.retryLater', () =>
      scripts.outboxRetryLater.run(
        this.redis,
        [...this.keys.indexKeys, this.keys.event(id)],
        [id, now.getTime(), addMs(now, delayMs).getTime(), errorMessage, workerId ?? ''],
      ),
    )
    checkFenced(reply, 'outbox.retryLater', id, workerId)
  }

  async getFailedEvents(limit?: number): Promise<OutboxEvent[]> {
    const max = this.validate.limit(limit)
    return storage('outbox.getFailedEvents', async () => {
      const reply = await scripts.outboxGetFailed.run(this.redis, this.keys.indexKeys, [max])
      return eventsOf(reply, toOutboxEvent)
    })
  }

  async requeueFailed(eventIds: readonly string[]): Promise<number> {
    const ids = this.validate.eventIds(eventIds)
    if (ids.length === 0) return 0
    const now = this.clock()
    const reply = await storage('outbox.requeueFailed', () =>
      scripts.outboxRequeueFailed.run(
        this.redis,
        [...this.keys.indexKeys, ...ids.map((id) => this.keys.event(id))],
        [now.getTime(), ...ids],
      ),
    )
    if (!Array.isArray(reply) || typeof reply[0] !== 'number')
      throw unexpectedReply('outbox.requeueFailed', reply)
    const missing = String(reply[1] ?? '')
    if (missing !== '') throw new EventNotFoundError(ADAPTER, missing)
    return reply[0]
  }

  async get(eventId: string): Promise<OutboxEvent | null> {
    return this.#read(this.validate.eventId(eventId), 'outbox.get')
  }

  async #read(eventId: string, operation: string): Promise<OutboxEvent | null> {
    return storage(operation, async () => {
      const fields = fieldsOfObject(await this.redis.hgetall(this.keys.event(eventId)))
      return fields ? toOutboxEvent(fields) : null
    })
  }
}
