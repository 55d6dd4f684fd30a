import {
  addMs,
  type Clock,
  cutoffDays,
  cutoffMinutes,
  EventNotFoundError,
  type InboxClaimOptions,
  type InboxClaimResult,
  type InboxCounts,
  type InboxEvent,
  type InboxParams,
  type InboxRepository,
  inboxCounts,
  newInboxEvent,
  PROCESSING_TIMEOUT_MESSAGE,
  systemClock,
  Validator,
} from '@txbox/core'
import type { ChainableCommander } from 'ioredis'
import { scriptBatches } from './batches.js'
import { eventsOf, fieldsOf, fieldsOfObject, toInboxEvent } from './codec.js'
import { ADAPTER, storage, unexpectedReply } from './errors.js'
import { DEFAULT_KEY_PREFIX, type InboxKeys, inboxKeys } from './keys.js'
import type { RedisStoreOptions } from './redis-options.js'
import { type RedisClient, scripts } from './scripts.js'

/**
 * The inbox on Redis. findOrCreate and claim are one script each, which looks the event up
 * by its id alone, counts the delivery and (for claim) takes the lease, so concurrent
 * deliveries of one event see one consistent state.
 */
export class RedisInboxRepository implements InboxRepository<ChainableCommander> {
  readonly keys: InboxKeys
  protected readonly redis: RedisClient
  protected readonly clock: Clock
  protected readonly validate = new Validator(ADAPTER, 'inbox')

  constructor(options: RedisStoreOptions) {
    this.redis = options.redis
    this.clock = options.clock ?? systemClock
    this.keys = inboxKeys(this.validate.identifier(options.keyPrefix ?? DEFAULT_KEY_PREFIX, 'keyPrefix'))
  }

  /** KEYS and ARGV shared by findOrCreate and claim (the layout of `insert()` in scripts.ts). */
  #lookupCall(params: InboxParams, now: Date): { keys: string[]; args: (string | number)[] } {
    const keys = [...this.keys.indexKeys, this.keys.event(params.eventId)]
    const args = [
      params.eventId,
      params.subject,
      params.payload,
      params.headers === undefined ? '0' : '1',
      params.headers ?? '',
      params.stream ?? '',
      params.streamSeq ?? 0,
      now.getTime(),
    ]
    return { keys, args }
  }

  async findOrCreate(params: InboxParams): Promise<InboxEvent> {
    const valid = this.validate.inboxParams(params)
    const now = this.clock()
    const { keys, args } = this.#lookupCall(valid, now)
    return storage('inbox.findOrCreate', async () => {
      const reply = await scripts.inboxFindOrCreate.run(this.redis, keys, args)
      if (reply === 1) return newInboxEvent(valid, now)
      if (Array.isArray(reply)) return toInboxEvent(fieldsOf(reply))
      throw unexpectedReply('inbox.findOrCreate', reply)
    })
  }

  async claim(params: InboxParams, options: InboxClaimOptions): Promise<InboxClaimResult> {
    const valid = this.validate.inboxParams(params)
    const { leaseMs, workerId } = this.validate.leaseOptions(options)
    const now = this.clock()
    const leaseUntil = addMs(now, leaseMs)
    const { keys, args } = this.#lookupCall(valid, now)
    return storage('inbox.claim', async () => {
      const reply = await scripts.inboxClaim.run(this.redis, keys, [...args, leaseUntil.getTime(), workerId])
      if (!Array.isArray(reply)) throw unexpectedReply('inbox.claim', reply)
      const [outcome, stored] = reply as [unknown, unknown]
      if (outcome === 1) {
        const event = newInboxEvent(valid, now)
        event.claimedAt = now
        event.claimedBy = workerId
        event.leaseUntil = leaseUntil
        return { event, shouldProcess: true }
      }
      if (outcome === 0 || outcome === 2) {
        return { event: toInboxEvent(fieldsOf(stored)), shouldProcess: outcome === 2 }
      }
      throw unexpectedReply('inbox.claim', reply)
    })
  }

  /**
   * With `tx`, the existence check runs now (so an unknown id throws before the caller's
   * EXEC) and the script is queued into the caller's MULTI: it runs at EXEC together with
   * the handler's writes, and leaves no trace if the MULTI is discarded.
   */
  async markAsProcessed(eventId: string, options?: { tx?: ChainableCommander | undefined }): Promise<void> {
    const id = this.validate.eventId(eventId)
    const now = this.clock()
    const keys = [...this.keys.indexKeys, this.keys.event(id)]
    const args = [id, now.getTime()]
    const tx = options?.tx
    if (tx) {
      const exists = await storage('inbox.markAsProcessed', () => this.redis.exists(this.keys.event(id)))
      if (exists === 0) throw new EventNotFoundError(ADAPTER, id, 'inbox')
      scripts.inboxMarkProcessed.queue(tx, keys, args)
      return
    }
    const reply = await storage('inbox.markAsProcessed', () =>
      scripts.inboxMarkProcessed.run(this.redis, keys, args),
    )
    if (reply === 0) throw new EventNotFoundError(ADAPTER, id, 'inbox')
    if (reply !== 1) throw unexpectedReply('inbox.markAsProcessed', reply)
  }

  async markAsFailed(eventId: string, errorMessage: string): Promise<void> {
    const id = this.validate.eventId(eventId)
    const message = this.validate.text(errorMessage, 'errorMessage')
    const reply = await storage('inbox.markAsFailed', () =>
      scripts.inboxMarkFailed.run(this.redis, [...this.keys.indexKeys, this.keys.event(id)], [id, message]),
    )
    if (reply === 0) throw new EventNotFoundError(ADAPTER, id, 'inbox')
    if (reply !== 1) throw unexpectedReply('inbox.markAsFailed', reply)
  }

  async isProcessed(eventId: string): Promise<boolean> {
    const id = this.validate.eventId(eventId)
    const status = await storage('inbox.isProcessed', () => this.redis.hget(this.keys.event(id), 'status'))
    return status === 'processed'
  }

  async cleanup(olderThanDays: number): Promise<number> {
    const cutoff = cutoffDays(
      this.clock(),
      this.validate.nonNegative(olderThanDays, 'olderThanDays'),
    ).getTime()
    return scriptBatches('inbox.cleanup', (batch) =>
      scripts.inboxCleanup.run(this.redis, this.keys.indexKeys, [cutoff, batch]),
    )
  }

  async resetStale(staleMinutes: number): Promise<number> {
    const cutoff = cutoffMinutes(
      this.clock(),
      this.validate.nonNegative(staleMinutes, 'staleMinutes'),
    ).getTime()
    return scriptBatches('inbox.resetStale', (batch) =>
      scripts.inboxResetStale.run(this.redis, this.keys.indexKeys, [
        cutoff,
        batch,
        PROCESSING_TIMEOUT_MESSAGE,
      ]),
    )
  }

  async getCountByStatus(): Promise<InboxCounts> {
    return storage('inbox.getCountByStatus', async () =>
      inboxCounts(Object.entries(await this.redis.hgetall(this.keys.counts))),
    )
  }

  async getFailedEvents(limit?: number): Promise<InboxEvent[]> {
    const max = this.validate.limit(limit)
    return storage('inbox.getFailedEvents', async () => {
      const reply = await scripts.inboxGetFailed.run(this.redis, this.keys.indexKeys, [max])
      return eventsOf(reply, toInboxEvent)
    })
  }

  async get(eventId: string): Promise<InboxEvent | null> {
    const id = this.validate.eventId(eventId)
    return storage('inbox.get', async () => {
      const fields = fieldsOfObject(await this.redis.hgetall(this.keys.event(id)))
      return fields ? toInboxEvent(fields) : null
    })
  }
}
