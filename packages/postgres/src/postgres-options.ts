import { createHash } from 'node:crypto'
import { type Clock, resolveMaxEventBytes, systemClock, ValidationError, Validator } from '@txbox/core'
import type { Pool } from 'pg'
import { isPool } from './client.js'
import { ADAPTER } from './errors.js'
import {
  type PostgresPartitioningOptions,
  type ResolvedPartitioning,
  resolvePartitioning,
} from './postgres-partitions.js'
import type { PostgresNotifyMode } from './sql.js'

/** The options' validator (also the wakeup's). */
export const validate = new Validator(ADAPTER)

/** Options of {@link createPostgresStore} and of the repository classes. */
export interface PostgresStoreOptions {
  /** A `pg` Pool. The store never ends it: the pool belongs to the caller. */
  pool: Pool
  /** The schema holding the tables (default `public`); created by `migrate()` when missing. */
  schema?: string | undefined
  /** Prepended to every table and index name (default `txbox_`). */
  tablePrefix?: string | undefined
  /** The source of every timestamp (default the wall clock); the database's `now()` is never used. */
  clock?: Clock | undefined
  /**
   * When an enqueue that inserts events calls `pg_notify` on the channel, so a relay's wakeup
   * can sleep on `LISTEN` instead of polling: `'waiting'` (default) only while a wakeup of the
   * channel is asleep (it raises a flag in `<prefix>wakeup` before it sleeps), so a busy
   * relay costs the enqueues nothing; `'always'` on every such enqueue (NOTIFY takes a
   * database-wide lock at commit: concurrent committers queue on it); `'off'` never. The
   * notification is transactional: a rolled-back enqueue wakes nobody.
   */
  notify?: PostgresNotifyMode | undefined
  /** The `LISTEN/NOTIFY` channel (default: derived from schema and prefix, see {@link defaultChannel}). */
  channel?: string | undefined
  /**
   * The largest event `findOrCreate` accepts, in bytes of its NATS message (payload +
   * headers, see `natsMessageBytes`). Default 1,048,576, NATS's default `max_payload`; set
   * it to your server's `max_payload`. Bigger events raise `PayloadTooLargeError`.
   */
  maxEventBytes?: number | undefined
  /**
   * Send each statement as a named prepared statement, planned once per connection (default
   * `true`). Turn it off behind a pooler that does not keep prepared statements per client
   * (PgBouncer in transaction mode before 1.21, or without `max_prepared_statements`).
   */
  preparedStatements?: boolean | undefined
  /**
   * Time-partitioned outbox and inbox tables (PostgreSQL 13 or later): `{ interval: 'daily' }`
   * or `'monthly'`, `ahead` partitions created in advance. `migrate()` converts existing
   * tables (see docs/MIGRATIONS.md); `cleanup` then drops whole partitions whose every row
   * is `sent` (`processed`) before the cutoff, and keeps the partitions ahead. Every store on
   * partitioned tables needs this option: its enqueue and inbox statements differ.
   */
  partitioning?: PostgresPartitioningOptions | undefined
}

/** The options after validation, with defaults applied. */
export interface ResolvedPostgresOptions {
  readonly pool: Pool
  readonly schema: string
  readonly tablePrefix: string
  readonly clock: Clock
  readonly notify: PostgresNotifyMode
  readonly channel: string
  readonly maxEventBytes: number
  readonly preparedStatements: boolean
  readonly partitioning: ResolvedPartitioning | undefined
}

const NOTIFY_MODES: readonly unknown[] = ['waiting', 'always', 'off'] satisfies PostgresNotifyMode[]

/** Default schema. */
export const DEFAULT_SCHEMA = 'public'
/** Default table prefix. */
export const DEFAULT_TABLE_PREFIX = 'txbox_'

/** The longest name suffix the DDL appends to the prefix. */
const LONGEST_SUFFIX = 'outbox_claimable_idx'

/** PostgreSQL truncates identifiers (and rejects channel names) beyond 63 bytes. */
const MAX_IDENTIFIER_BYTES = 63

/**
 * The channel an outbox notifies on: `<prefix>outbox` in `public`, `<schema>_<prefix>outbox`
 * elsewhere. When that would exceed PostgreSQL's 63-byte name limit, a stable hash of
 * schema and prefix is used instead, so two namespaces never share a channel by truncation.
 */
export const defaultChannel = (schema: string, tablePrefix: string): string => {
  const readable = schema === DEFAULT_SCHEMA ? `${tablePrefix}outbox` : `${schema}_${tablePrefix}outbox`
  if (readable.length <= MAX_IDENTIFIER_BYTES) return readable
  const digest = createHash('sha256').update(`${schema}\u0000${tablePrefix}`).digest('hex').slice(0, 32)
  return `txbox_outbox_${digest}`
}

/**
 * Validates the schema and table prefix alone, with their defaults: the store's options, and
 * `migrationScripts`, which prints DDL for a namespace without a pool.
 */
export const resolveNamespace = (options: {
  readonly schema?: unknown
  readonly tablePrefix?: unknown
}): { readonly schema: string; readonly tablePrefix: string } => {
  const schema = validate.identifier(options.schema ?? DEFAULT_SCHEMA, 'schema')
  // The longest derived name is `<prefix>outbox_claimable_idx`; keep it within 63 bytes so
  // PostgreSQL never silently truncates two names into one.
  const tablePrefix = validate.identifier(options.tablePrefix ?? DEFAULT_TABLE_PREFIX, 'tablePrefix')
  if (tablePrefix.length > MAX_IDENTIFIER_BYTES - LONGEST_SUFFIX.length) {
    throw new ValidationError(
      ADAPTER,
      `tablePrefix must be at most ${MAX_IDENTIFIER_BYTES - LONGEST_SUFFIX.length} characters so that ` +
        `"${LONGEST_SUFFIX}" fits PostgreSQL's 63-byte names; got ${tablePrefix.length}`,
    )
  }
  return { schema, tablePrefix }
}

/** Validates the store options (identifiers before any SQL is built from them). */
export const resolveOptions = (options: PostgresStoreOptions): ResolvedPostgresOptions => {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError(ADAPTER, 'options must be an object with a pg Pool as `pool`')
  }
  if (!isPool(options.pool)) throw new ValidationError(ADAPTER, 'options.pool must be a pg Pool')
  const { schema, tablePrefix } = resolveNamespace(options)
  if (options.clock !== undefined && typeof options.clock !== 'function') {
    throw new ValidationError(ADAPTER, 'options.clock must be a function returning a Date')
  }
  if (options.notify !== undefined && !NOTIFY_MODES.includes(options.notify)) {
    throw new ValidationError(
      ADAPTER,
      `options.notify must be 'waiting' (the default: only while a relay's wakeup sleeps), 'always' or 'off'; got ${
        typeof options.notify === 'boolean'
          ? `${options.notify} (the boolean option became these modes: true is 'always', false is 'off')`
          : typeof options.notify === 'string'
            ? JSON.stringify(options.notify.slice(0, 40))
            : typeof options.notify
      }`,
    )
  }
  if (options.preparedStatements !== undefined && typeof options.preparedStatements !== 'boolean') {
    throw new ValidationError(ADAPTER, 'options.preparedStatements must be a boolean')
  }
  const channel =
    options.channel === undefined
      ? defaultChannel(schema, tablePrefix)
      : validate.identifier(options.channel, 'channel')
  return {
    pool: options.pool,
    schema,
    tablePrefix,
    clock: options.clock ?? systemClock,
    notify: options.notify ?? 'waiting',
    channel,
    maxEventBytes: resolveMaxEventBytes(ADAPTER, options.maxEventBytes),
    preparedStatements: options.preparedStatements ?? true,
    partitioning: resolvePartitioning(options.partitioning),
  }
}
