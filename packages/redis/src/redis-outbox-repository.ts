import {
  type AmbientTransactions,
  type ClaimRequest,
  type FencedOutcome,
  type NewOutboxEventParams,
  newOutboxEvent,
  type OutboxChange,
  type OutboxEvent,
  OutboxRepositoryKernel,
  type RequeueOutcome,
  resolveMaxEventBytes,
  type StatusCountRows,
  systemClock,
} from '@txbox/core'
import type { ChainableCommander } from 'ioredis'
import { type LuaScript, multiHandleFor, type RedisClient } from './client.js'
import { CoalescedHashReads } from './coalesced-hash-reads.js'
import { ADAPTER, classifyRedisError, UnexpectedReplyError } from './errors.js'
import { DEFAULT_KEY_PREFIX, type OutboxKeys, outboxKeys } from './keys.js'
import {
  REDIS_MAX_STRING_BYTES,
  REDIS_SWEEP_BATCH,
  type RedisStoreOptions,
  SCAN_CAP,
} from './redis-options.js'
import { eventsOf, fieldsOf, fieldsOfObject, outboxEventArgs, toOutboxEvent } from './rows.js'
import { scripts } from './scripts.js'

/**
 * The enqueue script for `count` events: the one-event script (about a third of the text,
 * which a `{ tx }` enqueue sends with every MULTI) or the batch script; both answer a list.
 */
const enqueueScriptFor = (count: number): LuaScript =>
  count === 1 ? scripts.outboxFindOrCreateOne : scripts.outboxFindOrCreate

/** What a fenced script answers: 1 applied, 0 the event is not stored, -1 the lease is lost. */
const FENCED: ReadonlyMap<unknown, FencedOutcome> = new Map([
  [1, 'applied'],
  [0, 'missing'],
  [-1, 'lost'],
])

/**
 * The outbox on Redis. Every state change is one Lua script (see scripts.ts), so it is
 * atomic against every other client; reads of a single event are plain HGETALLs.
 *
 * `{ tx }` is a `ChainableCommander` from `redis.multi()`: enqueue scripts are queued into
 * it and run when the caller calls `exec()`, all or nothing with respect to other clients
 * (MULTI/EXEC is isolated), and `discard()` (or never calling `exec()`) leaves no trace.
 */
export class RedisOutboxRepository extends OutboxRepositoryKernel<ChainableCommander> {
  readonly keys: OutboxKeys
  protected readonly redis: RedisClient

  /** `ambient` is internal: the `store.transaction` that `createRedisStore` gives both repositories. */
  constructor(options: RedisStoreOptions, ambient?: AmbientTransactions<ChainableCommander>) {
    super({
      adapter: ADAPTER,
      clock: options.clock ?? systemClock,
      maxEventBytes: resolveMaxEventBytes(ADAPTER, options.maxEventBytes, REDIS_MAX_STRING_BYTES),
      classify: classifyRedisError,
      transaction: multiHandleFor(options.redis),
      sweepBatch: REDIS_SWEEP_BATCH,
      ambient,
      orderingKeys: true,
    })
    this.redis = options.redis
    this.#hashReads = new CoalescedHashReads(options.redis)
    this.keys = outboxKeys(this.validate.identifier(options.keyPrefix ?? DEFAULT_KEY_PREFIX, 'keyPrefix'))
  }

  /** The fixed index keys, then one event key per id: the KEYS of every per-event script. */
  #keysOf(eventIds: readonly string[]): string[] {
    return [...this.keys.indexKeys, ...eventIds.map((id) => this.keys.event(id))]
  }

  // What each MULTI has queued so far, by event id: its replies come only at EXEC, so a second
  // enqueue of one id in the same MULTI must return what the first queued (first write wins at
  // EXEC), not an event built from its own, ignored, arguments.
  readonly #queuedByMulti = new WeakMap<ChainableCommander, Map<string, OutboxEvent>>()

  readonly #hashReads: CoalescedHashReads

  /**
   * Without `tx`: one script inserts the new events and answers the stored ones atomically
   * (EXISTS, INCR seq, HSET, index, count), so 20 concurrent calls store one event and all
   * return it.
   *
   * A keyed event's keySeq is taken by the same script when it runs, so it follows the
   * order in which the writes executed.
   *
   * With `tx`: a MULTI cannot hand back a reply before EXEC, so the stored events are read
   * first (outside the transaction) and returned where they exist; otherwise the event as it
   * will be stored is returned. The same idempotent script is queued either way, so EXEC
   * inserts only what is still absent: when another client stores the same id between our
   * read and the caller's EXEC, the first write wins and what we returned may differ from
   * what is stored (same id, another payload/enqueuedAt). A new keyed event is returned
   * without its keySeq: the script takes it at EXEC (read it back with `get` after EXEC).
   */
  protected async insertEvents(
    events: readonly NewOutboxEventParams[],
    now: Date,
    tx: ChainableCommander | undefined,
  ): Promise<ReadonlyMap<string, OutboxEvent>> {
    if (tx) return this.#queueEvents(events, now, tx)
    const keys = this.#keysOf(events.map((event) => event.eventId))
    const args = [now.getTime(), ...events.flatMap(outboxEventArgs)]
    const byId = new Map<string, OutboxEvent>()
    const reply = await enqueueScriptFor(events.length).run(this.redis, keys, args)
    if (!Array.isArray(reply) || reply.length !== events.length)
      throw new UnexpectedReplyError('reply', reply)
    events.forEach((event, index) => {
      // A new event's seq (its keySeq when keyed): we know what we wrote. A stored one: its hash.
      const answer: unknown = reply[index]
      if (typeof answer === 'number')
        byId.set(
          event.eventId,
          newOutboxEvent(event, now, event.orderingKey === undefined ? undefined : answer),
        )
      else if (Array.isArray(answer)) byId.set(event.eventId, toOutboxEvent(fieldsOf(answer)))
      else throw new UnexpectedReplyError('reply', reply)
    })
    return byId
  }

  /** The `{ tx }` half of {@link insertEvents}: reads now, queues the script for EXEC. */
  async #queueEvents(
    events: readonly NewOutboxEventParams[],
    now: Date,
    tx: ChainableCommander,
  ): Promise<ReadonlyMap<string, OutboxEvent>> {
    const earlier = this.#queuedByMulti.get(tx) ?? new Map<string, OutboxEvent>()
    this.#queuedByMulti.set(tx, earlier)
    const fresh = events.filter((event) => !earlier.has(event.eventId))
    if (fresh.length > 0) {
      const eventKeys = fresh.map((event) => this.keys.event(event.eventId))
      const reading = this.#readStored(eventKeys)
      const args = [now.getTime(), ...fresh.flatMap(outboxEventArgs)]
      const stored = await reading
      fresh.forEach((event, index) => {
        const fields = stored[index]
        earlier.set(event.eventId, fields ? toOutboxEvent(fields) : newOutboxEvent(event, now))
      })
      // Queued only once the read succeeded: an enqueue that throws leaves the MULTI as it was.
      enqueueScriptFor(fresh.length).queue(tx, [...this.keys.indexKeys, ...eventKeys], args)
    }
    // Copies: `earlier` answers the MULTI's next calls, and the caller may change what it gets.
    return new Map(events.map((event) => [event.eventId, { ...(earlier.get(event.eventId) as OutboxEvent) }]))
  }

  /**
   * The stored hash under each key, null where none. One event: its HGETALL, sent together
   * with the other single-event reads of the same tick (see CoalescedHashReads). A batch: one
   * EXISTS of all its keys (they share the store's slot), so the usual batch of new ids costs
   * one command; only when some are stored does a pipeline of HGETALLs follow.
   */
  async #readStored(keys: readonly string[]): Promise<(Map<string, string> | null)[]> {
    const [only] = keys
    if (keys.length === 1 && only !== undefined) return [fieldsOfObject(await this.#hashReads.read(only))]
    if ((await this.redis.exists(...keys)) === 0) return keys.map(() => null)
    const pipeline = this.redis.pipeline()
    for (const key of keys) pipeline.hgetall(key)
    return ((await pipeline.exec()) ?? []).map(([error, record]) => {
      if (error) throw error
      return fieldsOfObject(record as Record<string, string>)
    })
  }

  protected async setPublishing(eventId: string, now: Date): Promise<boolean> {
    const keys = this.#keysOf([eventId])
    return (await scripts.outboxMarkPublishing.runForNumber(this.redis, keys, [eventId, now.getTime()])) === 1
  }

  protected async applyFenced(
    eventId: string,
    change: OutboxChange,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    const keys = this.#keysOf([eventId])
    const worker = workerId ?? ''
    const reply =
      change.status === 'sent'
        ? await scripts.outboxMarkSent.run(this.redis, keys, [eventId, change.sentAt.getTime(), worker])
        : change.status === 'failed'
          ? await scripts.outboxMarkFailed.run(this.redis, keys, [
              eventId,
              change.errorMessage,
              worker,
              this.clock().getTime(),
            ])
          : await scripts.outboxRetryLater.run(this.redis, keys, [
              eventId,
              change.now.getTime(),
              change.availableAt.getTime(),
              change.errorMessage,
              worker,
            ])
    const outcome = FENCED.get(reply)
    if (outcome === undefined) throw new UnexpectedReplyError('reply', reply)
    return outcome
  }

  /** Read-only: computes the due set without promoting delayed events (see OUTBOX_FIND_PENDING). */
  protected async selectPending(now: Date, limit: number): Promise<OutboxEvent[]> {
    const reply = await scripts.outboxFindPending.run(this.redis, this.keys.indexKeys, [
      now.getTime(),
      limit,
      SCAN_CAP,
    ])
    return eventsOf(reply, toOutboxEvent)
  }

  protected async deleteSent(cutoff: Date, limit: number): Promise<number> {
    return scripts.outboxCleanup.runForNumber(this.redis, this.keys.indexKeys, [cutoff.getTime(), limit])
  }

  protected async resetPublishing(cutoff: Date, now: Date, limit: number): Promise<number> {
    const args = [cutoff.getTime(), now.getTime(), limit]
    return scripts.outboxResetStale.runForNumber(this.redis, this.keys.indexKeys, args)
  }

  /** One HGETALL of the counts hash the scripts keep exact. */
  protected async countStatuses(): Promise<StatusCountRows> {
    return Object.entries(await this.redis.hgetall(this.keys.counts))
  }

  /** One script: see OUTBOX_CLAIM for why two claimers never get the same event. */
  protected async claimEvents(request: ClaimRequest): Promise<OutboxEvent[]> {
    const reply = await scripts.outboxClaim.run(this.redis, this.keys.indexKeys, [
      request.now.getTime(),
      request.leaseUntil.getTime(),
      request.workerId,
      request.limit,
      SCAN_CAP,
      request.deadLettersBlockKeys ? '1' : '0',
    ])
    return eventsOf(reply, toOutboxEvent)
  }

  protected async renewLeases(
    eventIds: readonly string[],
    workerId: string,
    leaseUntil: Date,
  ): Promise<Iterable<string>> {
    const args = [leaseUntil.getTime(), workerId, ...eventIds]
    return scripts.outboxRenewLease.runForIds(this.redis, this.#keysOf(eventIds), args)
  }

  protected async markSent(
    eventIds: readonly string[],
    workerId: string | undefined,
    now: Date,
  ): Promise<Iterable<string>> {
    const args = [now.getTime(), workerId ?? '', ...eventIds]
    return scripts.outboxMarkManySent.runForIds(this.redis, this.keys.indexKeys, args)
  }

  protected async requeue(eventIds: readonly string[], now: Date): Promise<RequeueOutcome> {
    const reply = await scripts.outboxRequeueFailed.run(this.redis, this.#keysOf(eventIds), [
      now.getTime(),
      ...eventIds,
    ])
    if (!Array.isArray(reply) || typeof reply[0] !== 'number') throw new UnexpectedReplyError('reply', reply)
    const [requeued, ...missing] = reply as [number, ...unknown[]]
    return { requeued, missing: missing.map(String) }
  }

  protected async selectFailed(limit: number): Promise<OutboxEvent[]> {
    return eventsOf(
      await scripts.outboxGetFailed.run(this.redis, this.keys.indexKeys, [limit]),
      toOutboxEvent,
    )
  }

  protected async read(eventId: string): Promise<OutboxEvent | null> {
    const fields = fieldsOfObject(await this.redis.hgetall(this.keys.event(eventId)))
    return fields ? toOutboxEvent(fields) : null
  }
}
