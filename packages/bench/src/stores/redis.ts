import type { EnqueueParams, InboxParams, StoreConnection } from '@txbox/core'
import { connectRedis, execTransaction, inboxKeys, outboxKeys, type RedisStore } from '@txbox/redis'
import { type ChainableCommander, Redis } from 'ioredis'
import { redisRawOutbox } from '../raw-relay/redis.js'
import { claimThenMark } from '../raw-relay/types.js'
import { enqueueIn } from '../scenarios.js'
import type { Claimer, Counter, Namespace, Target } from '../types.js'
import { setUpOrClose } from './connections.js'
import { uniqueName } from './names.js'

let roundTrips = 0
let patched = false
/**
 * Round trips: a command sent on its own is one; a pipeline or MULTI/EXEC is one for all its
 * commands (ioredis writes them together and the caller awaits one reply batch).
 */
const patchCounter = (client: Redis): void => {
  if (patched) return
  patched = true
  const redisProto = Redis.prototype as unknown as Record<string, unknown>
  const send = redisProto.sendCommand as (...a: unknown[]) => unknown
  redisProto.sendCommand = function (this: unknown, ...args: unknown[]) {
    // Commands queued by a pipeline pass a stream argument; they are counted at exec.
    if (args[1] === undefined) roundTrips++
    return send.apply(this, args)
  }
  const pipelineProto = Object.getPrototypeOf(client.pipeline()) as Record<string, unknown>
  const exec = pipelineProto.exec as (...a: unknown[]) => unknown
  pipelineProto.exec = function (this: unknown, ...args: unknown[]) {
    roundTrips++
    return exec.apply(this, args)
  }
}

const counter: Counter = {
  unit: 'round trips',
  reset: () => {
    roundTrips = 0
  },
  value: () => roundTrips,
}

export const redisTarget = async (url: string): Promise<Target> => {
  const probe = connectRedis(url)
  try {
    patchCounter(probe.client)
    return {
      name: 'redis',
      serverVersion: await probe.serverVersion(),
      counter,
      scale: 1,
      namespace: () => redisNamespace(url),
      // Each namespace owns its connections and closes them in dispose().
      close: async () => {},
    }
  } finally {
    await probe.close()
  }
}

type RedisConnection = StoreConnection<RedisStore, Redis>

/** One connection of a namespace, with the store on it; connected now, so a refused one fails here. */
const openConnection = async (url: string, keyPrefix: string): Promise<RedisConnection> => {
  const connection = connectRedis(url, { prefix: keyPrefix })
  await setUpOrClose(connection, () => connection.client.connect())
  return connection
}

/** Raw inbox insert-or-count-delivery: 1 when new. */
const RAW_INBOX = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
  return 0
end
redis.call('HSET', KEYS[1], 'eventId', ARGV[1], 'subject', ARGV[2], 'payload', ARGV[3], 'status', 'processing',
  'receivedAt', ARGV[4], 'deliveries', 1, 'claimedAt', ARGV[4], 'claimedBy', ARGV[5], 'leaseUntil', ARGV[6])
return 1`

/**
 * A fresh key prefix on a connection of its own (the adapter's store and the raw side share
 * it); claimers after the first each get one more, closed with the namespace.
 */
const redisNamespace = async (url: string): Promise<Namespace> => {
  const keyPrefix = uniqueName('b')
  const first = await openConnection(url, keyPrefix)
  const { store, client: main } = first
  await setUpOrClose(first, () => store.migrate())
  const connections = [first]
  const keys = outboxKeys(keyPrefix)
  const ikeys = inboxKeys(keyPrefix)
  const orders = `${keys.eventPrefix.replace(/outbox:e:$/, '')}orders:`
  let seq = 0
  // The minimal write set of one event: its hash and its place in the ready set.
  const queueEvent = (target: ChainableCommander, e: EnqueueParams, now: number) => {
    const s = ++seq
    target.hset(keys.event(e.eventId), {
      eventId: e.eventId,
      subject: e.subject,
      payload: e.payload,
      status: 'pending',
      enqueuedAt: now,
      availableAt: now,
      retryCount: 0,
      seq: s,
    })
    target.zadd(keys.ready, s, e.eventId)
  }
  const rawInsertMany = async (events: readonly EnqueueParams[]): Promise<void> => {
    const pipeline = main.pipeline()
    const now = Date.now()
    for (const e of events) queueEvent(pipeline, e, now)
    await pipeline.exec()
  }
  const claimers: Claimer[] = []
  const claimerOn = ({ store: { outbox }, client }: RedisConnection): Claimer => {
    const raw = redisRawOutbox(client, keyPrefix)
    return { outbox, rawClaimAndMark: (workerId, limit) => claimThenMark(raw, workerId, limit) }
  }
  return {
    outbox: store.outbox,
    inbox: store.inbox,
    endpoint: { store: 'redis', url, prefix: keyPrefix },
    async rawInsertOne(e) {
      const pipeline = main.pipeline()
      queueEvent(pipeline, e, Date.now())
      await pipeline.exec()
    },
    rawInsertMany,
    async adapterTx(events, n) {
      const multi = main.multi()
      multi.hset(`${orders}${keyPrefix}-${n}`, { ref: `order-${n}`, total: 100 })
      await enqueueIn(store.outbox, events, multi)
      await execTransaction(multi)
    },
    async rawTx(events, n) {
      const multi = main.multi()
      multi.hset(`${orders}${keyPrefix}-${n}`, { ref: `order-${n}`, total: 100 })
      const now = Date.now()
      for (const event of events) queueEvent(multi, event, now)
      await multi.exec()
    },
    // A separate ioredis connection per claimer.
    async claimer(k) {
      while (claimers.length <= k) {
        if (claimers.length > 0) connections.push(await openConnection(url, keyPrefix))
        claimers.push(claimerOn(connections[claimers.length] as RedisConnection))
      }
      return claimers[k] as Claimer
    },
    async prefill(events, forRaw) {
      if (forRaw) {
        for (let i = 0; i < events.length; i += 500) await rawInsertMany(events.slice(i, i + 500))
        return
      }
      // The adapter's claim also keeps per-status counts; fill through it so they stay right.
      for (let i = 0; i < events.length; i += 500)
        await store.outbox.findOrCreateMany(events.slice(i, i + 500))
    },
    async rawInboxClaimAndMark(m: InboxParams, workerId) {
      const key = ikeys.event(m.eventId)
      const now = Date.now()
      const inserted = await main.eval(
        RAW_INBOX,
        1,
        key,
        m.eventId,
        m.subject,
        m.payload,
        now,
        workerId,
        now + 60_000,
      )
      if (inserted === 1) {
        const pipeline = main.pipeline()
        pipeline.hset(key, 'status', 'processed', 'processedAt', Date.now())
        pipeline.hdel(key, 'claimedBy', 'leaseUntil')
        await pipeline.exec()
      }
    },
    async dispose() {
      try {
        let cursor = '0'
        do {
          const [next, found] = await main.scan(cursor, 'MATCH', `txbox:{${keyPrefix}}*`, 'COUNT', 1000)
          cursor = next
          if (found.length > 0) await main.unlink(...found)
        } while (cursor !== '0')
      } finally {
        await Promise.all(connections.map((connection) => connection.close()))
      }
    },
  }
}
