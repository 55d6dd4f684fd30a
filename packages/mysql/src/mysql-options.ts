import type { Clock } from '@txbox/core'
import type { Pool } from 'mysql2/promise'

/** The table prefix when none is given: tables `txbox_outbox`, `txbox_inbox`, `txbox_schema_version`. */
export const DEFAULT_TABLE_PREFIX = 'txbox_'

/** A deadlock or lock wait timeout that the adapter retried (for metrics and tests). */
export interface RetryEvent {
  /** The repository operation, e.g. `outbox.claim`. */
  readonly operation: string
  /** The attempt that failed (1-based); the next one runs after a short jittered backoff. */
  readonly attempt: number
  /** The driver's error (`errno` 1213 or 1205). */
  readonly error: unknown
}

/** Options of `createMySqlStore` and of each repository. */
export interface MySqlStoreOptions {
  /**
   * A mysql2/promise pool. Create it with `charset: 'utf8mb4_bin'` (or any utf8mb4
   * collation; mysql2's default `utf8mb4_unicode_ci` works too): a utf8mb3 connection
   * cannot carry emoji. The adapter does not depend on the pool's `timezone`,
   * `dateStrings`, `supportBigNumbers` or `typeCast`.
   */
  pool: Pool
  /** Prefix of every table name, a validated identifier (default `txbox_`). */
  tablePrefix?: string | undefined
  /** The source of every timestamp (default: the system clock). */
  clock?: Clock | undefined
  /** Called before a deadlocked (1213) or timed-out (1205) step is run again. */
  onRetry?: ((event: RetryEvent) => void) | undefined
  /**
   * The largest event `findOrCreate` accepts, in bytes of its NATS message (payload +
   * headers, see `natsMessageBytes`). Default 1,048,576, NATS's default `max_payload`; set
   * it to your server's `max_payload`. Bigger events raise `PayloadTooLargeError`. A value
   * over what the server takes in one statement (`max_allowed_packet` less 16 KiB) is a
   * `ValidationError` at `migrate()` and at the first enqueue (the server is asked then).
   */
  maxEventBytes?: number | undefined
}
