import type { StorageFailure } from '@txbox/core'

/** The adapter name in every error message: `[txbox] [redis] ...`. */
export const ADAPTER = 'redis'

/**
 * Redis answered something the adapter never writes: a script reply of another shape, or a
 * schema version that is not a number. The keys under the store's prefix hold foreign data.
 */
export class UnexpectedReplyError extends Error {
  constructor(what: string, reply: unknown) {
    super(`unexpected ${what} from Redis: ${JSON.stringify(reply)?.slice(0, 200)}`)
    this.name = 'UnexpectedReplyError'
  }
}

const failure = (reason: StorageFailure['reason'], retryable: boolean, detail?: string): StorageFailure =>
  detail === undefined ? { reason, retryable } : { reason, retryable, detail }

/** Node's socket errors: the server is down, unreachable or dropped us. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
])

/**
 * Redis error replies start with an upper-case code (`WRONGTYPE ...`, `NOPERM ...`); a Lua
 * script's `redis.call` passes the code of the failed command through.
 */
const REPLY_CODES: Readonly<Record<string, StorageFailure>> = {
  // A key under the store's prefix holds another type: foreign data, not a transient fault.
  WRONGTYPE: failure('schema', false),
  NOPERM: failure('permission', false),
  NOAUTH: failure('permission', false),
  WRONGPASS: failure('permission', false),
  // Failover and resharding: a node that cannot serve this slot or is (re)loading its data.
  READONLY: failure('unavailable', true),
  LOADING: failure('unavailable', true),
  MASTERDOWN: failure('unavailable', true),
  CLUSTERDOWN: failure('unavailable', true),
  TRYAGAIN: failure('unavailable', true),
  // Another client's long script holds the server: it refuses for load.
  BUSY: failure('throttled', true),
}

/**
 * Maps what ioredis throws to a reason. Reply errors are told apart by their Redis code;
 * connection failures by ioredis' own messages (it has no error codes for them) and Node's
 * socket codes. Never throws.
 */
export const classifyRedisError = (error: unknown): StorageFailure => {
  if (error instanceof UnexpectedReplyError) return failure('schema', false)
  if (!(error instanceof Error)) return failure('unknown', false)
  const { message } = error
  const code = (error as { code?: unknown }).code
  if (code === 'ETIMEDOUT' || message === 'Command timed out') return failure('timeout', true)
  if (typeof code === 'string' && SOCKET_CODES.has(code)) return failure('unavailable', true)
  if (
    error.name === 'MaxRetriesPerRequestError' ||
    error.name === 'ClusterAllFailedError' ||
    message === 'Connection is closed.' ||
    message.startsWith("Stream isn't writeable") ||
    message.startsWith('None of startup nodes is available') ||
    message.startsWith('Too many Cluster redirections')
  ) {
    return failure('unavailable', true)
  }
  if (message.startsWith('OOM ')) {
    return failure('throttled', true, `${message} (the server is at maxmemory: free memory or raise it)`)
  }
  if (message.startsWith('ERR max number of clients reached')) return failure('throttled', true)
  if (/string exceeds maximum allowed size|invalid bulk length/.test(message)) {
    return failure('limit', false, `${message} (a value is over the server's proto-max-bulk-len)`)
  }
  const known = REPLY_CODES[/^([A-Z]+) /.exec(message)?.[1] ?? '']
  return known ?? failure('unknown', false)
}
