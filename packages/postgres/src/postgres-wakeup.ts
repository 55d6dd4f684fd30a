import { runStorageOperation, StorageError, ValidationError } from '@txbox/core'
import type { ClientBase, Notification, Pool, PoolClient } from 'pg'
import { ADAPTER, classifyPostgresError } from './errors.js'
import { DEFAULT_SCHEMA, DEFAULT_TABLE_PREFIX, defaultChannel, validate } from './postgres-options.js'

/** Options of {@link createPostgresWakeup}: a pool to borrow one connection from, or your own client. */
export interface PostgresWakeupOptions {
  /** The wakeup checks out one connection and keeps it for LISTEN until `close()`. */
  pool?: Pool | undefined
  /** Or a dedicated, connected client (not one used for queries in parallel); `close()` leaves it open. */
  client?: ClientBase | undefined
  /** The store's schema (default `public`), to derive the channel. */
  schema?: string | undefined
  /** The store's table prefix (default `txbox_`), to derive the channel. */
  tablePrefix?: string | undefined
  /** The channel, when the store was given one explicitly. */
  channel?: string | undefined
}

/** Options of {@link PostgresWakeup.wait}. */
export interface WaitOptions {
  /** Give up after this many milliseconds (resolves `false`). Without it, waits for a notification. */
  timeoutMs?: number | undefined
  /** Abort the wait (resolves `false`). */
  signal?: AbortSignal | undefined
}

/**
 * A wake-up hint for a relay: resolves when an enqueue commits, so the relay can sleep on
 * `LISTEN` instead of polling. It is a hint, not a queue: a relay still claims in a loop and
 * keeps a poll interval as a fallback (notifications are lost while the connection is down).
 *
 * It holds one connection while listening, and `pool.end()` waits for it: whoever owns the
 * wakeup must `close()` it. Handed to `OutboxRelay` as `wakeup`, the relay owns it and closes
 * it in `stop()` (unless `ownsWakeup: false`).
 */
export class PostgresWakeup {
  /** The channel listened on. */
  readonly channel: string
  readonly #pool: Pool | undefined
  readonly #client: ClientBase | undefined
  #connection: ClientBase | undefined
  #listening: Promise<void> | undefined
  /** A notification arrived while nobody waited: the next `wait` returns at once. */
  #pending = false
  #closed = false
  readonly #waiters = new Set<(notified: boolean) => void>()

  constructor(options: PostgresWakeupOptions) {
    if (
      typeof options !== 'object' ||
      options === null ||
      (options.pool === undefined) === (options.client === undefined)
    ) {
      throw new ValidationError(ADAPTER, 'createPostgresWakeup needs exactly one of `pool` or `client`')
    }
    this.#pool = options.pool
    this.#client = options.client
    this.channel =
      options.channel === undefined
        ? defaultChannel(
            validate.identifier(options.schema ?? DEFAULT_SCHEMA, 'schema'),
            validate.identifier(options.tablePrefix ?? DEFAULT_TABLE_PREFIX, 'tablePrefix'),
          )
        : validate.identifier(options.channel, 'channel')
  }

  readonly #onNotification = (message: Notification): void => {
    if (message.channel !== this.channel) return
    if (this.#waiters.size === 0) this.#pending = true
    else this.#wakeAll(true)
  }

  // A lost connection may have dropped notifications: wake everyone (look now) and remember
  // it, then LISTEN again on the next wait.
  readonly #onConnectionLost = (error?: Error): void => {
    this.#detach(error ?? new Error('connection ended'))
    this.#pending = true
    this.#wakeAll(true)
  }

  #wakeAll(notified: boolean): void {
    const waiters = [...this.#waiters]
    this.#waiters.clear()
    for (const wake of waiters) wake(notified)
  }

  #detach(error?: Error): void {
    const connection = this.#connection
    this.#connection = undefined
    this.#listening = undefined
    if (!connection) return
    connection.off('notification', this.#onNotification)
    connection.off('error', this.#onConnectionLost)
    connection.off('end', this.#onConnectionLost)
    // A pooled connection that failed is destroyed rather than returned to the pool.
    if (this.#pool) (connection as PoolClient).release(error)
  }

  /**
   * Starts listening (idempotent). Call it before the relay's first claim so that an
   * enqueue committed between that claim and the first `wait` is not missed.
   */
  listen(): Promise<void> {
    if (this.#closed) return Promise.reject(new ValidationError(ADAPTER, 'the wakeup is closed'))
    this.#listening ??= runStorageOperation(ADAPTER, 'wakeup.listen', classifyPostgresError, async () => {
      const connection = this.#client ?? (await (this.#pool as Pool).connect())
      this.#connection = connection
      connection.on('notification', this.#onNotification)
      connection.on('error', this.#onConnectionLost)
      connection.on('end', this.#onConnectionLost)
      await connection.query(`LISTEN "${this.channel}"`)
    }).catch((error: unknown) => {
      this.#detach(error instanceof Error ? error : undefined)
      throw error
    })
    return this.#listening
  }

  /**
   * Resolves `true` when an enqueue has committed since the last wait (at once if one
   * already did), `false` on timeout, abort or close. Takes `{ timeoutMs, signal }`, or just
   * an AbortSignal (the relay's `RelayWakeup.wait(signal)` shape).
   */
  async wait(options: WaitOptions | AbortSignal = {}): Promise<boolean> {
    const { timeoutMs: rawTimeout, signal }: WaitOptions =
      options instanceof AbortSignal ? { signal: options } : options
    const timeoutMs = rawTimeout === undefined ? undefined : validate.nonNegative(rawTimeout, 'timeoutMs')
    if (signal?.aborted || this.#closed) return false
    await this.listen()
    // Re-checked: the signal may have fired, or close() run, while LISTEN was being set up.
    if (signal?.aborted || this.#closed) return false
    if (this.#pending) {
      this.#pending = false
      return true
    }
    return new Promise<boolean>((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined
      const onAbort = () => finish(false)
      const finish = (notified: boolean) => {
        this.#waiters.delete(finish)
        if (timer !== undefined) clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        resolve(notified)
      }
      this.#waiters.add(finish)
      if (timeoutMs !== undefined) timer = setTimeout(() => finish(false), timeoutMs)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Stops listening; pending waits resolve `false`. A pooled connection goes back to the pool. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#wakeAll(false)
    const listening = this.#listening
    if (!listening) return
    try {
      await listening
    } catch {
      // listen() already failed and reported to its caller; there is nothing to undo.
      return
    }
    const connection = this.#connection
    if (!connection) return
    let failure: Error | undefined
    try {
      await connection.query(`UNLISTEN "${this.channel}"`)
    } catch (error) {
      failure = error instanceof Error ? error : new Error(String(error))
    }
    this.#detach(failure)
    if (failure && !this.#pool) throw new StorageError(ADAPTER, 'wakeup.close', failure)
  }
}

/**
 * Creates a wake-up hint on the store's channel. Cheap when unused: nothing connects until
 * the first `listen()` or `wait()`.
 */
export const createPostgresWakeup = (options: PostgresWakeupOptions): PostgresWakeup =>
  new PostgresWakeup(options)
