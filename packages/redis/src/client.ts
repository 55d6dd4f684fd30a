import { createHash } from 'node:crypto'
import { runStorageOperation, StorageError, ValidationError } from '@txbox/core'
import type { ChainableCommander, Cluster, Redis } from 'ioredis'
import { ADAPTER, classifyRedisError, UnexpectedReplyError } from './errors.js'

/** A connection the adapter runs scripts on: an ioredis `Redis` or `Cluster`. */
export type RedisClient = Redis | Cluster

type Arg = string | number

/**
 * A Lua script called by its SHA1 (EVALSHA), falling back to EVAL when the server answers
 * NOSCRIPT (after a restart, a failover to a replica that never saw it, or SCRIPT FLUSH).
 * EVAL both runs and caches the script, so the next call is an EVALSHA again.
 *
 * We do not use `redis.defineCommand` (which does the same fallback per socket) so that
 * the adapter never adds methods to the caller's client and stays typed.
 */
export class LuaScript {
  readonly lua: string
  readonly sha: string

  constructor(lua: string) {
    this.lua = lua
    this.sha = createHash('sha1').update(lua).digest('hex')
  }

  async run(redis: RedisClient, keys: readonly string[], args: readonly Arg[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args)
    } catch (error) {
      if (!isNoScript(error)) throw error
      return await redis.eval(this.lua, keys.length, ...keys, ...args)
    }
  }

  /** Runs the script for its integer reply: a count, or an outcome code. */
  async runForNumber(redis: RedisClient, keys: readonly string[], args: readonly Arg[]): Promise<number> {
    const reply = await this.run(redis, keys, args)
    if (typeof reply !== 'number') throw new UnexpectedReplyError('reply', reply)
    return reply
  }

  /** Runs the script for its list of ids. */
  async runForIds(redis: RedisClient, keys: readonly string[], args: readonly Arg[]): Promise<string[]> {
    const reply = await this.run(redis, keys, args)
    if (!Array.isArray(reply)) throw new UnexpectedReplyError('reply', reply)
    return reply.map(String)
  }

  /**
   * Queues the script into a caller's MULTI. EVAL, not EVALSHA: inside MULTI a NOSCRIPT
   * would only surface in the EXEC reply, after the caller's other commands were applied,
   * and could not be retried atomically. Sending the text makes the queued call always
   * runnable.
   */
  queue(tx: ChainableCommander, keys: readonly string[], args: readonly Arg[]): void {
    tx.eval(this.lua, keys.length, ...keys, ...args)
  }
}

const isNoScript = (error: unknown): boolean => error instanceof Error && error.message.startsWith('NOSCRIPT')

/**
 * Where a client's commands land, as ioredis was configured: a Cluster or a database index,
 * and the keyPrefix ioredis puts before every key.
 */
const destinationOf = (client: unknown): string => {
  const { isCluster, options } = (client ?? {}) as {
    isCluster?: unknown
    options?: { db?: unknown; keyPrefix?: unknown }
  }
  const where = isCluster === true ? 'a Redis Cluster' : `database ${Number(options?.db ?? 0)}`
  return options?.keyPrefix ? `${where} with keyPrefix ${JSON.stringify(options.keyPrefix)}` : where
}

/**
 * The `{ tx }` check of both repositories of the store on `redis`: a write queued on anything
 * but a pipeline (the client itself, say) would run at once, outside the caller's MULTI; one
 * queued on a MULTI of a client with another database index or keyPrefix would land under
 * other keys at EXEC, where the store never reads. Both are refused before any I/O.
 */
export const multiHandleFor =
  (redis: RedisClient) =>
  (tx: ChainableCommander | undefined): ChainableCommander | undefined => {
    if (tx === undefined) return tx
    const handle = tx as Partial<{ isPipeline: unknown; exec: unknown; redis: unknown }>
    if (
      typeof tx !== 'object' ||
      tx === null ||
      handle.isPipeline !== true ||
      typeof handle.exec !== 'function'
    ) {
      throw new ValidationError(
        ADAPTER,
        '{ tx } must be the ChainableCommander that redis.multi() returns (then call exec() on it)',
      )
    }
    const theirs = handle.redis === undefined ? undefined : destinationOf(handle.redis)
    const ours = destinationOf(redis)
    if (theirs !== undefined && theirs !== ours) {
      throw new ValidationError(
        ADAPTER,
        `{ tx } is a MULTI of a client on ${theirs}, but the store's client writes to ${ours}: its EXEC would put the events where the store never reads; call multi() on a client of the store's database`,
      )
    }
    return tx
  }

/** What `exec()` of an ioredis MULTI resolves to: one `[error, result]` pair per command, or null when aborted by WATCH. */
export type ExecResult = [error: Error | null, result: unknown][] | null

/**
 * Runs `exec()` on a MULTI and throws when Redis applied it only partly. Redis has no
 * rollback: when one queued command fails at EXEC time (a script error, WRONGTYPE), the
 * others are still applied. This turns that into a `StorageError` (the first failure as
 * `cause`, classified, never retryable since part of it is applied) instead of a result
 * array the caller might not inspect. A transaction aborted by WATCH (exec resolves to
 * null) is a retryable conflict.
 */
export const execTransaction = async (multi: {
  exec(): Promise<ExecResult>
}): Promise<[error: Error | null, result: unknown][]> => {
  const operation = 'transaction.exec'
  const results = await runStorageOperation(ADAPTER, operation, classifyRedisError, () => multi.exec())
  if (results === null) {
    throw new StorageError(ADAPTER, operation, null, 'the transaction was aborted (a WATCHed key changed)', {
      reason: 'conflict',
      retryable: true,
    })
  }
  const failed = results.filter(([error]) => error !== null)
  if (failed.length > 0) {
    const first = failed[0]?.[0]
    throw new StorageError(
      ADAPTER,
      operation,
      first,
      `${failed.length} of ${results.length} queued commands failed; the others were applied (Redis has no rollback): ${first?.message}`,
      { reason: classifyRedisError(first).reason, retryable: false },
    )
  }
  return results
}
