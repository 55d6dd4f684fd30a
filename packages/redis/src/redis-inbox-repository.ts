import {
  type AmbientTransactions,
  type FencedOutcome,
  type InboxClaimRequest,
  type InboxClaimResult,
  type InboxEvent,
  type InboxParams,
  InboxRepositoryKernel,
  type InboxStatus,
  newInboxEvent,
  type StatusCountRows,
  systemClock,
} from '@txbox/core'
import type { ChainableCommander } from 'ioredis'
import { multiHandleFor, type RedisClient } from './client.js'
import { ADAPTER, classifyRedisError, UnexpectedReplyError } from './errors.js'
import { DEFAULT_KEY_PREFIX, type InboxKeys, inboxKeys } from './keys.js'
import { REDIS_SWEEP_BATCH, type RedisStoreOptions } from './redis-options.js'
import { eventsOf, fieldsOf, fieldsOfObject, inboxEventArgs, toInboxEvent } from './rows.js'
import { scripts } from './scripts.js'

/** A mark script's reply: 1 applied, 0 not stored, -1 the fence refused. */
const fenceOutcome = (reply: number): FencedOutcome => {
  if (reply === 1) return 'applied'
  if (reply === 0) return 'missing'
  if (reply === -1) return 'lost'
  throw new UnexpectedReplyError('reply', reply)
}

/**
 * The inbox on Redis. findOrCreate and claim are one script each, which looks the event up
 * by its id alone, counts the delivery and (for claim) takes the lease, so concurrent
 * deliveries of one event see one consistent state.
 */
export class RedisInboxRepository extends InboxRepositoryKernel<ChainableCommander> {
  readonly keys: InboxKeys
  protected readonly redis: RedisClient

  /** `ambient` is internal: the `store.transaction` that `createRedisStore` gives both repositories. */
  constructor(options: RedisStoreOptions, ambient?: AmbientTransactions<ChainableCommander>) {
    super({
      adapter: ADAPTER,
      clock: options.clock ?? systemClock,
      classify: classifyRedisError,
      transaction: multiHandleFor(options.redis),
      sweepBatch: REDIS_SWEEP_BATCH,
      ambient,
    })
    this.redis = options.redis
    this.keys = inboxKeys(this.validate.identifier(options.keyPrefix ?? DEFAULT_KEY_PREFIX, 'keyPrefix'))
  }

  #keysOf(eventId: string): string[] {
    return [...this.keys.indexKeys, this.keys.event(eventId)]
  }

  protected async recordDelivery(params: InboxParams, now: Date): Promise<InboxEvent> {
    const reply = await scripts.inboxFindOrCreate.run(
      this.redis,
      this.#keysOf(params.eventId),
      inboxEventArgs(params, now),
    )
    if (reply === 1) return newInboxEvent(params, now)
    if (Array.isArray(reply)) return toInboxEvent(fieldsOf(reply))
    throw new UnexpectedReplyError('reply', reply)
  }

  protected async claimDelivery(request: InboxClaimRequest): Promise<InboxClaimResult> {
    const { params, now, workerId, leaseUntil } = request
    const reply = await scripts.inboxClaim.run(this.redis, this.#keysOf(params.eventId), [
      ...inboxEventArgs(params, now),
      leaseUntil.getTime(),
      workerId,
    ])
    if (!Array.isArray(reply)) throw new UnexpectedReplyError('reply', reply)
    const [outcome, stored] = reply as [unknown, unknown]
    if (outcome === 1) {
      const event = newInboxEvent(params, now)
      event.claimedAt = now
      event.claimedBy = workerId
      event.leaseUntil = leaseUntil
      return { event, shouldProcess: true }
    }
    if (outcome === 0 || outcome === 2) {
      return { event: toInboxEvent(fieldsOf(stored)), shouldProcess: outcome === 2 }
    }
    throw new UnexpectedReplyError('reply', reply)
  }

  /**
   * With `tx`, the fence and existence check run now (so an unknown id or a lost lease throws
   * before the caller's EXEC, and the caller discards its MULTI), pinning the claim until that
   * EXEC; the script, fenced again, is queued into the caller's MULTI: it runs at EXEC
   * together with the handler's writes, and leaves no trace if the MULTI is discarded.
   */
  protected async setProcessed(
    eventId: string,
    now: Date,
    tx: ChainableCommander | undefined,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    const keys = this.#keysOf(eventId)
    const worker = workerId ?? ''
    const args = [eventId, now.getTime(), worker]
    if (tx) {
      const held = await scripts.inboxHold.runForNumber(
        this.redis,
        [this.keys.event(eventId)],
        [worker, now.getTime()],
      )
      if (held !== 1) return fenceOutcome(held)
      scripts.inboxMarkProcessed.queue(tx, keys, [...args, 'queued'])
      return 'applied'
    }
    return fenceOutcome(await scripts.inboxMarkProcessed.runForNumber(this.redis, keys, args))
  }

  protected async setFailed(
    eventId: string,
    errorMessage: string,
    workerId: string | undefined,
  ): Promise<FencedOutcome> {
    const keys = this.#keysOf(eventId)
    const args = [eventId, errorMessage, workerId ?? '']
    return fenceOutcome(await scripts.inboxMarkFailed.runForNumber(this.redis, keys, args))
  }

  protected async deleteProcessed(cutoff: Date, limit: number): Promise<number> {
    return scripts.inboxCleanup.runForNumber(this.redis, this.keys.indexKeys, [cutoff.getTime(), limit])
  }

  protected async failStale(cutoff: Date, errorMessage: string, limit: number): Promise<number> {
    const args = [cutoff.getTime(), limit, errorMessage]
    return scripts.inboxResetStale.runForNumber(this.redis, this.keys.indexKeys, args)
  }

  protected async countStatuses(): Promise<StatusCountRows> {
    return Object.entries(await this.redis.hgetall(this.keys.counts))
  }

  protected async selectFailed(limit: number): Promise<InboxEvent[]> {
    return eventsOf(await scripts.inboxGetFailed.run(this.redis, this.keys.indexKeys, [limit]), toInboxEvent)
  }

  protected async read(eventId: string): Promise<InboxEvent | null> {
    const fields = fieldsOfObject(await this.redis.hgetall(this.keys.event(eventId)))
    return fields ? toInboxEvent(fields) : null
  }

  /** One HGET of the status field instead of the whole hash. */
  protected override async readStatus(eventId: string): Promise<InboxStatus | undefined> {
    return ((await this.redis.hget(this.keys.event(eventId), 'status')) ?? undefined) as
      | InboxStatus
      | undefined
  }
}
