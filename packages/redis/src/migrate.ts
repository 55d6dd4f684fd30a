import {
  applyMigrations,
  type Clock,
  loadMigrations,
  type Migration,
  type MigrationHistory,
  noMigrationScripts,
  runStorageOperation,
  versionsThrough,
} from '@txbox/core'
import type { RedisClient } from './client.js'
import { ADAPTER, classifyRedisError, UnexpectedReplyError } from './errors.js'
import { schemaKey } from './keys.js'
import { scripts } from './scripts.js'

/**
 * The layout versions, one JSON file each in `migrations/` (`0002_inbox_id_only.json`): the
 * single source of truth of what `migrate()` records.
 */
export const REDIS_MIGRATIONS: readonly Migration[] = loadMigrations(
  new URL('../migrations/', import.meta.url),
)

/** The layout version `migrate()` records: the last migration file's. */
export const SCHEMA_VERSION = String(REDIS_MIGRATIONS.length)

/** What a layout file holds: the version it describes, and what changed. */
interface LayoutStep {
  readonly layout: number
  readonly summary: string
}

/**
 * Redis' migration history is the one key `txbox:{<keyPrefix>}:schema` holding the last
 * layout version applied, as the releases before the migration files wrote it: "2" means
 * versions 1 and 2, so a store migrated by them is recognised and nothing is re-applied.
 *
 * There is no lock: Redis has no schema, so a step changes no data (a layout's new keys
 * appear as events are written) and recording only ever raises the version. Two processes
 * migrating at once both succeed and leave the same version.
 */
export class RedisMigrationHistory implements MigrationHistory {
  readonly #redis: RedisClient
  readonly #key: string

  constructor(redis: RedisClient, keyPrefix: string) {
    this.#redis = redis
    this.#key = schemaKey(keyPrefix)
  }

  locked<T>(apply: () => Promise<T>): Promise<T> {
    return apply()
  }

  async appliedVersions(): Promise<number[]> {
    const recorded = await this.#redis.get(this.#key)
    if (recorded === null) return []
    if (!/^\d+$/.test(recorded)) throw new UnexpectedReplyError('schema version', recorded)
    return versionsThrough(Number(recorded))
  }

  /** Checks the file says what its name says; nothing to create. */
  async apply(migration: Migration): Promise<void> {
    const step = JSON.parse(migration.body) as Partial<LayoutStep>
    if (step.layout !== migration.version || typeof step.summary !== 'string') {
      throw new Error(
        `migration ${migration.version} (${migration.name}) must be {"layout": ${migration.version}, "summary": "..."}`,
      )
    }
  }

  async record(migration: Migration): Promise<void> {
    await scripts.schemaRecord.run(this.#redis, [this.#key], [migration.version])
  }
}

/**
 * Records the current layout version of the store under `keyPrefix` (a validated
 * identifier). Idempotent and safe from many processes at once.
 */
export const migrateRedis = async (redis: RedisClient, keyPrefix: string, clock: Clock): Promise<void> => {
  await runStorageOperation(ADAPTER, 'migrate', classifyRedisError, () =>
    applyMigrations(new RedisMigrationHistory(redis, keyPrefix), REDIS_MIGRATIONS, clock),
  )
}

/**
 * There is no DDL to print for Redis: always throws a `ValidationError` saying what
 * `migrate()` does. Kept beside the SQL adapters' `migrationScripts` so that
 * `txbox-migrations print --store redis` answers with that instead of a missing export.
 */
export const migrationScripts = (_options?: object): never =>
  noMigrationScripts(
    ADAPTER,
    'Redis has no schema: keys appear as events are written, and migrate() only records the key layout version in txbox:{<keyPrefix>}:schema',
  )
