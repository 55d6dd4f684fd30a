import { readFileSync } from 'node:fs'
import type { ConformanceFixture, ConformanceTarget, Oracle } from '@txbox/conformance'
import { uniqueSuffix } from '@txbox/conformance'
import type { InboxEvent, OutboxEvent } from '@txbox/core'
import { type ChainableCommander, Cluster, type Redis } from 'ioredis'
import { execTransaction } from './client.js'
import { connectRedis } from './connect.js'
import { inboxKeys, outboxKeys, storeBase } from './keys.js'
import { createRedisStore, redisCapabilities } from './redis-store.js'
import { scripts } from './scripts.js'

/** This package's version, from its package.json (the same file in `src/` and `dist/`). */
const { version: VERSION } = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
) as { version: string }

/** The keys matching a glob, by SCAN on every master (fine for tests; never on the hot path). */
const scanKeys = async (redis: Redis | Cluster, pattern: string): Promise<string[]> => {
  const found: string[] = []
  for (const node of redis instanceof Cluster ? redis.nodes('master') : [redis]) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      found.push(...keys)
    } while (cursor !== '0')
  }
  return found
}

// The oracle maps the raw hash itself (no adapter code), so a bug in the adapter's decoding
// cannot hide a bug in what it stored.
const ms = (value: string | undefined): Date | undefined =>
  value === undefined ? undefined : new Date(Number(value))

const rawOutbox = (h: Record<string, string>): OutboxEvent | null => {
  if (Object.keys(h).length === 0) return null
  const event = {
    eventId: h.eventId,
    subject: h.subject,
    payload: h.payload,
    headers: h.headers,
    status: h.status,
    enqueuedAt: ms(h.enqueuedAt),
    sentAt: ms(h.sentAt),
    errorMessage: h.errorMessage,
    retryCount: Number(h.retryCount),
    availableAt: ms(h.availableAt),
    claimedAt: ms(h.claimedAt),
    claimedBy: h.claimedBy,
    leaseUntil: ms(h.leaseUntil),
    orderingKey: h.orderingKey,
    keySeq: h.keySeq === undefined ? undefined : Number(h.keySeq),
  }
  return Object.fromEntries(
    Object.entries(event).filter(([, v]) => v !== undefined),
  ) as unknown as OutboxEvent
}

const rawInbox = (h: Record<string, string>): InboxEvent | null => {
  if (Object.keys(h).length === 0) return null
  const event = {
    eventId: h.eventId,
    subject: h.subject,
    payload: h.payload,
    headers: h.headers,
    stream: h.stream,
    streamSeq: h.streamSeq === undefined ? undefined : Number(h.streamSeq),
    status: h.status,
    receivedAt: ms(h.receivedAt),
    processedAt: ms(h.processedAt),
    deliveries: Number(h.deliveries),
    errorMessage: h.errorMessage,
    claimedAt: ms(h.claimedAt),
    claimedBy: h.claimedBy,
    leaseUntil: ms(h.leaseUntil),
  }
  return Object.fromEntries(Object.entries(event).filter(([, v]) => v !== undefined)) as unknown as InboxEvent
}

/**
 * A view of `client` that runs `rewrite(script)` instead of each script of the adapter
 * (EVALSHA of a known script whose text the rewrite changes becomes EVAL of the new text);
 * every other command is the client's own.
 */
const rewritingClient = <C extends Redis | Cluster>(client: C, rewrite: (script: string) => string): C => {
  const bySha = new Map(Object.values(scripts).map((script) => [script.sha, script.lua]))
  const evaluate = client.eval.bind(client) as (...args: unknown[]) => Promise<unknown>
  const evaluateSha = client.evalsha.bind(client) as (...args: unknown[]) => Promise<unknown>
  return new Proxy(client, {
    get(target, property) {
      if (property === 'eval') {
        return (script: string, ...rest: unknown[]) => evaluate(rewrite(script), ...rest)
      }
      if (property === 'evalsha') {
        return (sha: string, ...rest: unknown[]) => {
          const lua = bySha.get(sha)
          const rewritten = lua === undefined ? lua : rewrite(lua)
          return rewritten === undefined || rewritten === lua
            ? evaluateSha(sha, ...rest)
            : evaluate(rewritten, ...rest)
        }
      }
      const value: unknown = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

/** Options of {@link createConformanceTarget}. */
export interface RedisConformanceOptions {
  /**
   * Run against a Redis Cluster: `host:port` of some nodes (the server URL from the suite is
   * then only used to find out that Redis is there). The target is named `redis-cluster`.
   */
  clusterNodes?: readonly string[] | undefined
  /**
   * Internal test seam for the hand-written Lua mutants (test/mutants.test.ts): every script
   * the store under test (and its peers) runs outside a caller's MULTI passes through this
   * function first. The oracle's commands are not rewritten. Production code never sets it.
   */
  rewriteScript?: ((script: string) => string) | undefined
}

/** The conformance target of `@txbox/redis`: each fixture is its own key prefix. */
export const createConformanceTarget = (
  options: RedisConformanceOptions = {},
): ConformanceTarget<ChainableCommander> => {
  const { clusterNodes, rewriteScript } = options
  const storeView = <C extends Redis | Cluster>(client: C): C =>
    rewriteScript === undefined ? client : rewritingClient(client, rewriteScript)
  let redis: Redis | Cluster | undefined
  const client = (): Redis | Cluster => {
    if (!redis) throw new Error('[txbox] [redis] conformance target used before setup()')
    return redis
  }

  return {
    name: clusterNodes ? 'redis-cluster' : 'redis',
    version: VERSION,
    engine: 'redis',
    capabilities: redisCapabilities,

    async setup(server) {
      if (!server) throw new Error('[txbox] [redis] the redis target needs a server URL')
      redis = clusterNodes
        ? new Cluster(
            clusterNodes.map((node) => {
              const [host = '127.0.0.1', port = '6379'] = node.split(':')
              return { host, port: Number(port) }
            }),
            { lazyConnect: true },
          )
        : connectRedis(server.url).client
      await redis.connect()
      const info =
        redis instanceof Cluster ? await redis.nodes('master')[0]!.info('server') : await redis.info('server')
      const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown'
      return { serverVersion: `Redis ${version}${clusterNodes ? ' (Cluster)' : ''}` }
    },

    async create({ clock }): Promise<ConformanceFixture<ChainableCommander>> {
      const connection = client()
      const keyPrefix = `t_${uniqueSuffix()}`
      const store = createRedisStore({ redis: storeView(connection), keyPrefix, clock })
      await store.migrate()
      const outbox = outboxKeys(keyPrefix)
      const inbox = inboxKeys(keyPrefix)
      const oracle: Oracle = {
        outbox: async (eventId) => rawOutbox(await connection.hgetall(outbox.event(eventId))),
        inbox: async (eventId) => rawInbox(await connection.hgetall(inbox.event(eventId))),
        outboxCount: async () => (await scanKeys(connection, `${outbox.eventPrefix}*`)).length,
        inboxCount: async () => (await scanKeys(connection, `${inbox.eventPrefix}*`)).length,
      }
      return {
        outbox: store.outbox,
        inbox: store.inbox,
        migrate: () => store.migrate(),
        oracle,
        // A connection of its own (for a Cluster, a client of its own to every node): its
        // scripts interleave with the fixture's on the server, as another process's would.
        async peer() {
          const peerConnection = connection.duplicate()
          const peerStore = createRedisStore({ redis: storeView(peerConnection), keyPrefix, clock })
          return {
            outbox: peerStore.outbox,
            inbox: peerStore.inbox,
            dispose: async () => {
              if (peerConnection.status !== 'end') await peerConnection.quit()
            },
            // Disconnected by hand, ioredis neither reconnects nor queues: every next command fails.
            breakConnection: async () => peerConnection.disconnect(),
          }
        },
        async transaction(fn, options) {
          const multi = connection.multi()
          // Never calling exec() is the rollback: a pipelined MULTI sends nothing before it.
          const result = await fn(multi)
          if (options?.rollback) multi.discard()
          else await execTransaction(multi)
          return result
        },
        storeTransaction: store.transaction,
        // Standalone: a MULTI of another client, on another database index of the same server.
        // A Cluster has database 0 only: the MULTI of another store's store.transaction (same
        // keys, so a write it took would show in the oracle once its EXEC ran).
        async foreignTransaction(fn) {
          if (connection instanceof Cluster)
            return createRedisStore({ redis: storeView(connection), keyPrefix, clock }).transaction(fn)
          const other = connection.duplicate({ db: 1 })
          try {
            const multi = other.multi()
            const result = await fn(multi)
            await execTransaction(multi)
            return result
          } finally {
            await other.quit()
          }
        },
        async dispose() {
          const keys = await scanKeys(connection, `${storeBase(keyPrefix)}:*`)
          for (let i = 0; i < keys.length; i += 500) await connection.unlink(...keys.slice(i, i + 500))
        },
      }
    },

    async teardown() {
      await redis?.quit()
      redis = undefined
    },
  }
}
