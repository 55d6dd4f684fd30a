import {
  type ConnectOptions,
  checkUrlScheme,
  DEFAULT_CONNECT_TIMEOUT_MS,
  type StoreConnection,
  storeConnection,
  storeRegistration,
} from '@txbox/core'
import { Redis } from 'ioredis'
import { ADAPTER, classifyRedisError } from './errors.js'
import { createRedisStore, type RedisStore } from './redis-store.js'

/** Options of {@link connectRedis}: `prefix` is the store's `keyPrefix`; `poolSize` does not apply (one connection). */
export type RedisConnectOptions = ConnectOptions

/**
 * Opens a store on one Redis server from a `redis://` or `rediss://` URL. The client connects
 * on its first command (building talks to no server) and gives up a command after 3
 * reconnection attempts. ioredis reports connection failures as events, and the command that
 * gave up only says "max retries": the last one is kept for `lastConnectionError()` and
 * logged at debug level.
 */
export const connectRedis = (
  url: string,
  options: RedisConnectOptions = {},
): StoreConnection<RedisStore, Redis> => {
  const { schemes, example } = storeRegistration('redis')
  const redis = new Redis(checkUrlScheme(ADAPTER, url, schemes, example), {
    lazyConnect: true,
    maxRetriesPerRequest: 3,
    connectTimeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
  })
  let lastError: string | undefined
  redis.on('error', (error: unknown) => {
    lastError = error instanceof Error ? error.message : String(error)
    options.logger?.debug?.('redis connection error', { error: lastError })
  })
  redis.on('ready', () => {
    lastError = undefined
  })
  return storeConnection({
    adapter: ADAPTER,
    classify: classifyRedisError,
    client: redis,
    createStore: () =>
      createRedisStore({
        redis,
        keyPrefix: options.prefix,
        clock: options.clock,
        maxEventBytes: options.maxEventBytes,
      }),
    serverVersion: async () => {
      const info = await redis.info('server')
      return `Redis ${/redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown'}`
    },
    lastConnectionError: () => lastError,
    close: async () => {
      if (redis.status === 'end') return
      // QUIT only on a live connection: a client still (re)connecting would wait for the
      // server first, only to say goodbye.
      if (redis.status !== 'ready') return redis.disconnect()
      // QUIT's reply comes before the socket closes: closed means the client has ended.
      const ended = new Promise<void>((resolve) => redis.once('end', () => resolve()))
      await redis.quit().catch(() => redis.disconnect())
      await ended
    },
  })
}
