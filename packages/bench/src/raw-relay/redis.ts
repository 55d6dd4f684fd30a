import { outboxKeys } from '@txbox/redis'
import type { Redis } from 'ioredis'
import { RAW_LEASE_MS, type RawEvent, type RawOutbox } from './types.js'

/** Raw claim: pop the head of the ready set and lease each event, returning the hashes. */
const RAW_CLAIM = `
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[4])
local out = {}
for i = 1, #popped, 2 do
  local key = ARGV[5] .. popped[i]
  redis.call('HSET', key, 'status', 'publishing', 'claimedBy', ARGV[1], 'claimedAt', ARGV[2], 'leaseUntil', ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[3], popped[i])
  out[#out + 1] = redis.call('HGETALL', key)
end
return out`

/** Raw mark: for each id still held by the worker, sent + out of the lease set. */
const RAW_MARK = `
for i = 4, #ARGV do
  local key = ARGV[2] .. ARGV[i]
  if redis.call('HGET', key, 'claimedBy') == ARGV[1] then
    redis.call('HSET', key, 'status', 'sent', 'sentAt', ARGV[3])
    redis.call('HDEL', key, 'claimedBy', 'leaseUntil')
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return 1`

/** HGETALL's flat [field, value, ...] list as the event a relay publishes. */
const toRawEvent = (fields: readonly string[]): RawEvent => {
  const map = new Map<string, string>()
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i] as string, fields[i + 1] as string)
  return {
    eventId: map.get('eventId') ?? '',
    subject: map.get('subject') ?? '',
    payload: map.get('payload') ?? '',
    headers: map.get('headers'),
  }
}

/** Two Lua scripts on the key layout of the raw enqueue (a hash per event, a ready set by seq). */
export const redisRawOutbox = (client: Redis, keyPrefix: string): RawOutbox => {
  const keys = outboxKeys(keyPrefix)
  return {
    async claim(workerId, limit) {
      const now = Date.now()
      const claimed = (await client.eval(
        RAW_CLAIM,
        2,
        keys.ready,
        keys.leases,
        workerId,
        now,
        now + RAW_LEASE_MS,
        limit,
        keys.eventPrefix,
      )) as string[][]
      return claimed.map(toRawEvent)
    },
    async markSent(workerId, eventIds) {
      await client.eval(RAW_MARK, 1, keys.leases, workerId, keys.eventPrefix, Date.now(), ...eventIds)
    },
  }
}
