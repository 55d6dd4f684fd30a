import { DEFAULT_MAX_EVENT_BYTES, defineCapabilities, type TxboxStore } from '@txbox/core'
import type { ClientBase } from 'pg'
import type { PostgresTransaction } from './client.js'
import { migratePostgres } from './migrate.js'
import { PostgresInboxRepository } from './postgres-inbox-repository.js'
import { type PostgresStoreOptions, resolveOptions } from './postgres-options.js'
import { PostgresOutboxRepository } from './postgres-outbox-repository.js'
import { createPostgresWakeup, type PostgresWakeup } from './postgres-wakeup.js'

/**
 * What the PostgreSQL store promises: the caller's own transaction, and SKIP LOCKED claims
 * (with the default `maxEventBytes`; a store's own `capabilities` carry its configured limit).
 */
export const postgresCapabilities = defineCapabilities({
  transactions: 'native',
  claim: 'skip-locked',
  maxEventBytes: DEFAULT_MAX_EVENT_BYTES,
})

/** The store returned by {@link createPostgresStore}. */
export interface PostgresStore extends TxboxStore<PostgresTransaction> {
  readonly outbox: PostgresOutboxRepository
  readonly inbox: PostgresInboxRepository
  /** Frozen; `maxEventBytes` is this store's configured limit. */
  readonly capabilities: typeof postgresCapabilities
  /** The schema holding the tables. */
  readonly schema: string
  /** The table prefix. */
  readonly tablePrefix: string
  /** The `LISTEN/NOTIFY` channel enqueues notify on. */
  readonly channel: string
  /**
   * A wake-up hint on this store's channel. Uses one connection of the store's pool while
   * listening, or `client` when given.
   */
  createWakeup(options?: { client?: ClientBase | undefined }): PostgresWakeup
}

/**
 * Creates the outbox and inbox on a pg Pool. Call `migrate()` once at startup (or apply
 * migrations/*.sql with your own tool).
 */
export const createPostgresStore = (options: PostgresStoreOptions): PostgresStore => {
  const resolved = resolveOptions(options)
  const { pool, schema, tablePrefix, channel } = resolved
  return {
    outbox: new PostgresOutboxRepository(resolved),
    inbox: new PostgresInboxRepository(resolved),
    capabilities: defineCapabilities({ ...postgresCapabilities, maxEventBytes: resolved.maxEventBytes }),
    schema,
    tablePrefix,
    channel,
    migrate: () => migratePostgres(resolved),
    createWakeup: (wakeupOptions = {}) =>
      createPostgresWakeup(
        wakeupOptions.client === undefined ? { pool, channel } : { client: wakeupOptions.client, channel },
      ),
  }
}
