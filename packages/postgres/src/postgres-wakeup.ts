import { randomUUID } from 'node:crypto'
import { type Clock, runStorageOperation, StorageError, systemClock, ValidationError } from '@txbox/core'
import type { ClientBase, Notification, Pool, PoolClient, QueryResult } from 'pg'
import { ADAPTER, classifyPostgresError } from './errors.js'
import { DEFAULT_SCHEMA, DEFAULT_TABLE_PREFIX, defaultChannel, validate } from './postgres-options.js'
import { type WakeupSql, wakeupSql } from './sql.js'

/** How long a raised flag lives, in the database's clock: a wakeup that dies asleep stops costing enqueues after this. */
const FLAG_LIFETIME_MS = 60_000
/** A wakeup asleep this long raises its flag again, so the flag never lapses while it sleeps. */
const FLAG_REFRESH_MS = 20_000
/** The first pause before re-checking enqueues that may have missed the flag; doubled up to the second. */
const RECHECK_FIRST_MS = 5
const RECHECK_LONGEST_MS = 1_000

/** What a check after raising the flag found. */
interface WakeupCheck {
  /** Something is claimable now. */
  readonly due: boolean
  /** Transactions writing the outbox that may have missed the flag (virtual transaction ids). */
  readonly writers: readonly string[]
}

/** Options of {@link createPostgresWakeup}: a pool to borrow one connection from, or your own client. */
export interface PostgresWakeupOptions {
  /** The wakeup checks out one connection and keeps it for LISTEN until `close()`. */
  pool?: Pool | undefined
  /** Or a dedicated, connected client (not one used for queries in parallel); `close()` leaves it open. */
  client?: ClientBase | undefined
  /** The store's schema (default `public`): the channel's default and the tables the wakeup reads and flags. */
  schema?: string | undefined
  /** The store's table prefix (default `txbox_`), as `schema`. */
  tablePrefix?: string | undefined
  /** The channel, when the store was given one explicitly. */
  channel?: string | undefined
  /** The store's clock (default the wall clock): what is due when the wakeup checks before sleeping. */
  clock?: Clock | undefined
}

/** Options of {@link PostgresWakeup.wait}. */
export interface WaitOptions {
  /** Give up after this many milliseconds (resolves `false`). Without it, waits for a notification. */
  timeoutMs?: number | undefined
  /** Abort the wait (resolves `false`). */
  signal?: AbortSignal | undefined
}

/**
 * A wake-up hint for a relay: resolves when there is something to claim, so the relay can
 * sleep on `LISTEN` instead of polling. It is a hint, not a queue: a relay still claims in a
 * loop and keeps a poll interval as a fallback (notifications are lost while the connection
 * is down).
 *
 * Before it sleeps, `wait` raises this wakeup's flag in `<prefix>wakeup` (stores with
 * `notify: 'waiting'`, the default, notify only while a flag of their channel is live), then
 * checks once whether anything is claimable and resolves at once if so: an enqueue that
 * committed before the flag is not missed. It lowers the flag when it wakes. A relay that
 * claims full batches never waits, so under load no enqueue notifies.
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
  readonly #sql: WakeupSql
  readonly #clock: Clock
  /** This wakeup's row in the flags table: several relays may sleep on one channel. */
  readonly #listener = randomUUID()
  /** Waits that have raised the flag and not lowered it yet. */
  #raised = 0

  constructor(options: PostgresWakeupOptions) {
    if (
      typeof options !== 'object' ||
      options === null ||
      (options.pool === undefined) === (options.client === undefined)
    ) {
      throw new ValidationError(ADAPTER, 'createPostgresWakeup needs exactly one of `pool` or `client`')
    }
    if (options.clock !== undefined && typeof options.clock !== 'function') {
      throw new ValidationError(ADAPTER, 'createPostgresWakeup: clock must be a function returning a Date')
    }
    this.#pool = options.pool
    this.#client = options.client
    this.#clock = options.clock ?? systemClock
    const schema = validate.identifier(options.schema ?? DEFAULT_SCHEMA, 'schema')
    const tablePrefix = validate.identifier(options.tablePrefix ?? DEFAULT_TABLE_PREFIX, 'tablePrefix')
    this.#sql = wakeupSql(schema, tablePrefix)
    this.channel =
      options.channel === undefined
        ? defaultChannel(schema, tablePrefix)
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
   * Resolves `true` when there is something to claim: at once when an event is due or a
   * notification arrived since the last wait, else when an enqueue commits; `false` on
   * timeout, abort or close. Takes `{ timeoutMs, signal }`, or just an AbortSignal (the
   * relay's `RelayWakeup.wait(signal)` shape). Rejects with a StorageError when the flag
   * cannot be raised (e.g. migration 3 not applied).
   */
  async wait(options: WaitOptions | AbortSignal = {}): Promise<boolean> {
    const { timeoutMs: rawTimeout, signal }: WaitOptions =
      options instanceof AbortSignal ? { signal: options } : options
    const timeoutMs = rawTimeout === undefined ? undefined : validate.nonNegative(rawTimeout, 'timeoutMs')
    if (signal?.aborted || this.#closed) return false
    await this.listen()
    // Re-checked: the signal may have fired, or close() run, while LISTEN was being set up.
    if (signal?.aborted || this.#closed) return false
    if (this.#takePending()) return true
    const connection = this.#connection
    if (connection === undefined) return this.#takePending()
    this.#raised++
    try {
      let check: WakeupCheck
      try {
        check = await this.#storage(async () => {
          await connection.query(this.#sql.raise, [this.channel, this.#listener, FLAG_LIFETIME_MS])
          return this.#check(connection, undefined)
        })
      } catch (error) {
        if (!this.#connectionLost(connection, error)) throw error
        return true
      }
      if (this.#takePending() || check.due) return true
      if (signal?.aborted || this.#closed) return false
      return await this.#sleep(connection, check.writers, timeoutMs, signal)
    } finally {
      this.#lower(connection)
    }
  }

  /**
   * Whether `error` is `connection` breaking (its 'error' or 'end' event may come after the
   * failed query): then it may have dropped notifications, so the caller looks now, as every
   * waiter does when the listeners see it, and the next wait listens again.
   */
  #connectionLost(connection: ClientBase, error: unknown): boolean {
    if (!(error instanceof StorageError) || error.reason !== 'unavailable') return false
    if (connection === this.#connection) this.#onConnectionLost(error)
    this.#pending = false
    return true
  }

  #takePending(): boolean {
    const pending = this.#pending
    this.#pending = false
    return pending
  }

  #storage<T>(run: () => Promise<T>): Promise<T> {
    return runStorageOperation(ADAPTER, 'wakeup.wait', classifyPostgresError, run)
  }

  async #check(connection: ClientBase, among: readonly string[] | undefined): Promise<WakeupCheck> {
    const results = (await connection.query(
      this.#sql.check({ now: this.#clock(), among }),
    )) as unknown as QueryResult[]
    const writers = results[0]?.rows[0]?.writers as string[] | undefined
    return { due: results[1]?.rows[0]?.due === true, writers: writers ?? [] }
  }

  /** The last wait to end lowers the flag, in the background: the relay claims meanwhile. */
  #lower(connection: ClientBase): void {
    this.#raised--
    if (this.#raised > 0 || this.#closed || connection !== this.#connection) return
    connection.query(this.#sql.lower, [this.channel, this.#listener]).catch(() => {
      // The flag lapses by itself within FLAG_LIFETIME_MS; until then an enqueue notifies
      // needlessly, which costs it a little and loses nothing. A lost connection is
      // handled by its 'error'/'end' listeners.
    })
  }

  /**
   * Sleeps until a notification, the timeout or the abort. Meanwhile it raises the flag again
   * before it lapses, and re-checks while enqueues that may have missed the flag are in
   * flight (a missed hint would cost the relay a whole poll interval).
   */
  #sleep(
    connection: ClientBase,
    writers: readonly string[],
    timeoutMs: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined
      let recheck: ReturnType<typeof setTimeout> | undefined
      let pause = RECHECK_FIRST_MS
      let done = false
      const onAbort = () => finish(false)
      const refresh = setInterval(() => {
        connection.query(this.#sql.raise, [this.channel, this.#listener, FLAG_LIFETIME_MS]).catch(() => {
          // A failed refresh lets the flag lapse: enqueues stop notifying and the relay
          // wakes at its poll interval; a lost connection wakes it at once (see listen).
        })
      }, FLAG_REFRESH_MS)
      const finish = (notified: boolean, error?: unknown) => {
        if (done) return
        done = true
        this.#waiters.delete(finish)
        if (timer !== undefined) clearTimeout(timer)
        if (recheck !== undefined) clearTimeout(recheck)
        clearInterval(refresh)
        signal?.removeEventListener('abort', onAbort)
        if (error === undefined) resolve(notified)
        else reject(error)
      }
      const recheckLater = (among: readonly string[]) => {
        if (among.length === 0 || done) return
        recheck = setTimeout(() => {
          this.#storage(() => this.#check(connection, among)).then(
            (check) => {
              if (check.due) finish(true)
              else recheckLater(check.writers)
            },
            (error: unknown) =>
              this.#connectionLost(connection, error) ? finish(true) : finish(false, error),
          )
        }, pause)
        pause = Math.min(pause * 2, RECHECK_LONGEST_MS)
      }
      this.#waiters.add(finish)
      if (timeoutMs !== undefined) timer = setTimeout(() => finish(false), timeoutMs)
      signal?.addEventListener('abort', onAbort, { once: true })
      recheckLater(writers)
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
      await connection.query(this.#sql.lower, [this.channel, this.#listener])
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
