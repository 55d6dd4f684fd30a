import { uniqueSuffix } from '@txbox/conformance'
import { ManualClock } from '@txbox/core'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll } from 'vitest'
import { createRedisStore, type RedisStore } from '../src/index.js'
import { storeBase } from '../src/keys.js'

/** The server these tests need; without it they are skipped (or fail under TXBOX_REQUIRE_ALL=1). */
export const REDIS_URL = process.env.TXBOX_REDIS_URL
export const SKIP = REDIS_URL === undefined && process.env.TXBOX_REQUIRE_ALL !== '1'
export const SKIP_REASON =
  'TXBOX_REDIS_URL is not set (run `bash scripts/services.sh up redis` and export it)'

export const connect = (): Redis => {
  if (REDIS_URL === undefined) throw new Error(`TXBOX_REQUIRE_ALL=1 but ${SKIP_REASON}`)
  return new Redis(REDIS_URL, { maxRetriesPerRequest: 3 })
}

/** Every key matching a glob, by a full SCAN (tests only). */
export const scanAll = async (redis: Redis, pattern: string): Promise<string[]> => {
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    found.push(...keys)
  } while (cursor !== '0')
  return found.sort()
}

/** Every key of a store. */
export const keysOf = (redis: Redis, keyPrefix: string): Promise<string[]> =>
  scanAll(redis, `${storeBase(keyPrefix)}:*`)

export const dropStore = async (redis: Redis, keyPrefix: string): Promise<void> => {
  const keys = await keysOf(redis, keyPrefix)
  for (let i = 0; i < keys.length; i += 500) await redis.unlink(...keys.slice(i, i + 500))
}

export interface TestStore {
  store: RedisStore
  keyPrefix: string
  clock: ManualClock
}

export const newStore = async (
  redis: Redis,
  clock = new ManualClock(),
  options: { maxEventBytes?: number } = {},
): Promise<TestStore> => {
  const keyPrefix = `t_${uniqueSuffix()}`
  const store = createRedisStore({ redis, keyPrefix, clock: clock.now, ...options })
  await store.migrate()
  return { store, keyPrefix, clock }
}

/**
 * The connection and the stores of one describe block: `fresh()` makes a migrated store on a
 * key prefix of its own, dropped after each test. The connection opens on its first command,
 * so a skipped block opens none.
 */
export const useStores = (): {
  redis: Redis
  fresh(clock?: ManualClock, options?: { maxEventBytes?: number }): Promise<TestStore>
} => {
  const redis = new Redis(REDIS_URL ?? 'redis://unset.invalid', {
    lazyConnect: true,
    maxRetriesPerRequest: 3,
  })
  const made: TestStore[] = []
  beforeAll(() => {
    if (REDIS_URL === undefined) throw new Error(`TXBOX_REQUIRE_ALL=1 but ${SKIP_REASON}`)
  })
  afterEach(async () => {
    for (const t of made.splice(0)) await dropStore(redis, t.keyPrefix)
  })
  afterAll(async () => {
    await redis.quit()
  })
  return {
    redis,
    async fresh(clock = new ManualClock(), options = {}) {
      const t = await newStore(redis, clock, options)
      made.push(t)
      return t
    },
  }
}

/** Recounts statuses from the event hashes, the slow way the counts hash exists to avoid. */
export const recount = async (redis: Redis, eventPrefix: string): Promise<Record<string, number>> => {
  const counts: Record<string, number> = {}
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${eventPrefix}*`, 'COUNT', 1000)
    cursor = next
    for (const key of keys) {
      const status = await redis.hget(key, 'status')
      if (status) counts[status] = (counts[status] ?? 0) + 1
    }
  } while (cursor !== '0')
  return counts
}

/**
 * Checks the outbox indexes against the event hashes: each event sits in exactly the index
 * of its status (with the right score), the lease index holds exactly the leased events,
 * and the counts hash equals a recount. Returns the problems found (empty = consistent).
 */
export const outboxProblems = async (redis: Redis, store: RedisStore): Promise<string[]> => {
  const k = store.outbox.keys
  const problems: string[] = []
  const zset = async (key: string) => {
    const flat = await redis.zrange(key, 0, -1, 'WITHSCORES')
    const map = new Map<string, number>()
    for (let i = 0; i < flat.length; i += 2) map.set(flat[i]!, Number(flat[i + 1]))
    return map
  }
  const [ready, delayed, leases, publishing, sent, failed, blocked, parked] = await Promise.all(
    [k.ready, k.delayed, k.leases, k.publishing, k.sent, k.failed, k.blocked, k.parked].map(zset),
  )
  const indexed = new Map<string, string[]>()
  for (const [name, set] of Object.entries({ ready, delayed, publishing, sent, failed, blocked, parked })) {
    for (const id of set!.keys()) indexed.set(id, [...(indexed.get(id) ?? []), name])
  }
  /** Per ordering key: its live and dead sets as stored, and what the event hashes say they must hold. */
  const keyed = new Map<
    string,
    { live: Map<string, number>; dead: Map<string, number>; events: Record<string, string>[] }
  >()
  const keyOf = async (orderingKey: string) => {
    let entry = keyed.get(orderingKey)
    if (entry === undefined) {
      entry = {
        live: await zset(`${k.livePrefix}${orderingKey}`),
        dead: await zset(`${k.deadPrefix}${orderingKey}`),
        events: [],
      }
      keyed.set(orderingKey, entry)
    }
    return entry
  }
  const seen = new Set<string>()
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${k.eventPrefix}*`, 'COUNT', 1000)
    cursor = next
    for (const key of keys) {
      const h = await redis.hgetall(key)
      const id = h.eventId!
      seen.add(id)
      const where = indexed.get(id) ?? []
      if (h.orderingKey !== undefined) (await keyOf(h.orderingKey)).events.push(h)
      // A pending event is in exactly one of ready (due) and delayed (not due when written);
      // a keyed one may be blocked or parked instead (checked against its key below).
      const pendingIndex = ['ready', 'delayed', 'blocked', 'parked'].find((name) => where.includes(name))
      const expected = h.status === 'pending' ? (pendingIndex ?? 'ready') : h.status!
      if (where.length !== 1 || where[0] !== expected)
        problems.push(`${id} (${h.status}) indexed in [${where}]`)
      if (h.status === 'pending' && delayed!.has(id) && delayed!.get(id) !== Number(h.availableAt))
        problems.push(`${id} delayed score is not availableAt`)
      if (h.status === 'pending' && ready!.has(id) && ready!.get(id) !== Number(h.seq))
        problems.push(`${id} ready score is not seq`)
      if (h.status === 'publishing' && publishing!.get(id) !== Number(h.claimedAt))
        problems.push(`${id} publishing score is not claimedAt`)
      if (h.status === 'sent' && sent!.get(id) !== Number(h.sentAt))
        problems.push(`${id} sent score is not sentAt`)
      if (h.status === 'failed' && failed!.get(id) !== Number(h.seq))
        problems.push(`${id} failed score is not seq`)
      const leased = h.leaseUntil !== undefined
      if (leased !== leases!.has(id))
        problems.push(`${id} lease index disagrees (leaseUntil ${h.leaseUntil})`)
      if (leased && h.status !== 'publishing') problems.push(`${id} has a lease while ${h.status}`)
      if (leased && leases!.get(id) !== Number(h.leaseUntil))
        problems.push(`${id} lease score is not leaseUntil`)
    }
  } while (cursor !== '0')
  for (const [orderingKey, { live, dead, events }] of keyed) {
    const holds = (status: string | undefined) => status === 'pending' || status === 'publishing'
    const expectLive = events.filter((h) => holds(h.status))
    const expectDead = events.filter((h) => h.status === 'failed')
    for (const [set, expected, name] of [
      [live, expectLive, 'live'],
      [dead, expectDead, 'dead'],
    ] as const) {
      if (set.size !== expected.length)
        problems.push(`key ${orderingKey}: ${name} set has ${set.size}, expected ${expected.length}`)
      for (const h of expected) {
        const score = set.get(h.eventId!)
        // A publishing event may be pinned ahead of its key's pending ones (keySeq - 2^53).
        const pinned = name === 'live' && h.status === 'publishing' && score === Number(h.keySeq) - 2 ** 53
        if (score !== Number(h.keySeq) && !pinned)
          problems.push(`key ${orderingKey}: ${h.eventId} not in its ${name} set at its keySeq`)
      }
    }
    const publishing = expectLive.filter((h) => h.status === 'publishing')
    const lowestPending = Math.min(
      ...expectLive.filter((h) => h.status === 'pending').map((h) => live.get(h.eventId!) ?? Number.NaN),
    )
    for (const h of publishing)
      if (!((live.get(h.eventId!) ?? Number.NaN) < lowestPending))
        problems.push(`key ${orderingKey}: ${h.eventId} is publishing but a pending event is below it`)
    // A key with an event in flight has no pending head: every pending event is parked.
    const lowestLive =
      publishing.length > 0
        ? undefined
        : expectLive.reduce<Record<string, string> | undefined>(
            (low, h) => (low === undefined || Number(h.keySeq) < Number(low.keySeq) ? h : low),
            undefined,
          )
    for (const h of events.filter((event) => event.status === 'pending')) {
      const where = indexed.get(h.eventId!) ?? []
      if (h !== lowestLive) {
        if (!where.includes('parked'))
          problems.push(`key ${orderingKey}: ${h.eventId} is not its head but not parked`)
        continue
      }
      const deadBelow = expectDead.some((d) => Number(d.keySeq) < Number(h.keySeq))
      if (where.includes('parked')) problems.push(`key ${orderingKey}: its head ${h.eventId} is parked`)
      if (where.includes('blocked') !== deadBelow && !where.includes('delayed'))
        problems.push(
          `key ${orderingKey}: head ${h.eventId} blocked ${where.includes('blocked')} but dead letter below ${deadBelow}`,
        )
    }
    const last = Number(await redis.hget(k.keySeqs, orderingKey))
    for (const h of events)
      if (!(Number(h.keySeq) <= last))
        problems.push(`key ${orderingKey}: ${h.eventId} keySeq ${h.keySeq} above the counter ${last}`)
  }
  for (const id of [...blocked!.keys(), ...parked!.keys()]) {
    const h = await redis.hmget(k.event(id), 'status', 'orderingKey')
    if (h[0] !== 'pending' || h[1] === null)
      problems.push(`${id} (${h[0]}, key ${h[1]}) is blocked or parked`)
  }
  for (const id of indexed.keys()) if (!seen.has(id)) problems.push(`${id} is indexed but not stored`)
  for (const id of leases!.keys()) if (!seen.has(id)) problems.push(`${id} is leased but not stored`)
  const counts = await redis.hgetall(k.counts)
  const actual = await recount(redis, k.eventPrefix)
  const asNumbers = Object.fromEntries(Object.entries(counts).map(([s, n]) => [s, Number(n)]))
  if (JSON.stringify(sortKeys(asNumbers)) !== JSON.stringify(sortKeys(actual)))
    problems.push(`counts hash ${JSON.stringify(asNumbers)} != recount ${JSON.stringify(actual)}`)
  return problems
}

const sortKeys = (o: Record<string, number>) =>
  Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)))

/** The inbox twin of {@link outboxProblems}; no `(stream, streamSeq)` alias may be written. */
export const inboxProblems = async (redis: Redis, store: RedisStore): Promise<string[]> => {
  const k = store.inbox.keys
  const problems: string[] = []
  const scores = async (key: string) => {
    const flat = await redis.zrange(key, 0, -1, 'WITHSCORES')
    const map = new Map<string, number>()
    for (let i = 0; i < flat.length; i += 2) map.set(flat[i]!, Number(flat[i + 1]))
    return map
  }
  const processing = await scores(k.processing)
  const processed = await scores(k.processed)
  const failedMembers = new Set(await redis.zrange(k.failed, 0, -1))
  const aliases = new Set(await scanAll(redis, `${k.aliasPrefix}*`))
  const events = await scanAll(redis, `${k.eventPrefix}*`)
  for (const key of events) {
    const h = await redis.hgetall(key)
    const id = h.eventId!
    const inProcessing = processing.has(id)
    const inProcessed = processed.has(id)
    const member = `${h.receivedAt!.padStart(15, '0')}${h.seq!.padStart(16, '0')}${id}`
    const inFailed = failedMembers.delete(member)
    const where = [inProcessing && 'processing', inProcessed && 'processed', inFailed && 'failed'].filter(
      Boolean,
    )
    if (where.length !== 1 || where[0] !== h.status)
      problems.push(`${id} (${h.status}) indexed in [${where}]`)
    if (inProcessing && processing.get(id) !== Number(h.claimedAt ?? h.receivedAt))
      problems.push(`${id} processing score is not the claim time`)
    if (inProcessed && processed.get(id) !== Number(h.processedAt)) problems.push(`${id} processed score`)
    processing.delete(id)
    processed.delete(id)
  }
  for (const id of [...processing.keys(), ...processed.keys()])
    problems.push(`${id} is indexed but not stored`)
  for (const member of failedMembers) problems.push(`failed member ${member} has no event`)
  // The inbox keys on the event id alone: a (stream, streamSeq) alias would merge ids.
  for (const alias of aliases) problems.push(`alias ${alias} written`)
  const counts = Object.fromEntries(
    Object.entries(await redis.hgetall(k.counts)).map(([s, n]) => [s, Number(n)]),
  )
  const actual = await recount(redis, k.eventPrefix)
  if (JSON.stringify(sortKeys(counts)) !== JSON.stringify(sortKeys(actual)))
    problems.push(`counts hash ${JSON.stringify(counts)} != recount ${JSON.stringify(actual)}`)
  return problems
}
