import { uniqueSuffix } from '@txbox/conformance'
import { type Clock, ManualClock } from '@txbox/core'
import pg from 'pg'
import {
  createPostgresStore,
  type PostgresNotifyMode,
  type PostgresStore,
  type PostgresStoreOptions,
} from '../src/index.js'

/** The server URL, or undefined: tests that need it are skipped with this reason. */
export const url = process.env.TXBOX_POSTGRES_URL
export const skipReason = 'TXBOX_POSTGRES_URL is not set (run `bash scripts/services.sh up postgres`)'
if (url === undefined && process.env.TXBOX_REQUIRE_ALL === '1') {
  throw new Error(`TXBOX_REQUIRE_ALL=1 but ${skipReason}`)
}
export const noServer = url === undefined

export const newPool = (max = 4): pg.Pool => new pg.Pool({ connectionString: url, max })

/** A fresh schema name, dropped by the returned `drop`. */
export const freshSchema = (): string => `txbox_t_${uniqueSuffix()}`

export interface Namespace {
  readonly pool: pg.Pool
  readonly schema: string
  readonly clock: ManualClock
  readonly store: PostgresStore
  /** Another store on the same schema (e.g. for a second pool). */
  storeOn(pool: pg.Pool, options?: Partial<PostgresStoreOptions> & { clock?: Clock }): PostgresStore
  dispose(): Promise<void>
}

/** A migrated store in its own schema, with a frozen manual clock. */
export const createNamespace = async (
  options: { max?: number; notify?: PostgresNotifyMode } = {},
): Promise<Namespace> => {
  const pool = newPool(options.max)
  const schema = freshSchema()
  const clock = new ManualClock()
  const store = createPostgresStore({ pool, schema, clock: clock.now, notify: options.notify })
  await store.migrate()
  return {
    pool,
    schema,
    clock,
    store,
    storeOn: (other, extra = {}) => createPostgresStore({ pool: other, schema, clock: clock.now, ...extra }),
    async dispose() {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await pool.end()
    },
  }
}

/** Runs fn inside BEGIN on a pooled client, then COMMIT or ROLLBACK. */
export const inTransaction = async <T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
  end: 'COMMIT' | 'ROLLBACK' = 'COMMIT',
): Promise<T> => {
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    const result = await fn(client)
    await client.query(end)
    return result
  } catch (error) {
    await client.query('ROLLBACK')
    throw error
  } finally {
    client.release()
  }
}

export const event = (eventId: string, extra: Record<string, unknown> = {}) => ({
  eventId,
  subject: 'orders.created',
  payload: JSON.stringify({ eventId }),
  ...extra,
})
