import { readFileSync } from 'node:fs'
import type { ConformanceFixture, ConformanceTarget, Oracle } from '@txbox/conformance'
import { uniqueSuffix } from '@txbox/conformance'
import { encodeStoredText } from '@txbox/core'
import type { PoolClient } from 'pg'
import pg from 'pg'
import { statementName, withTransaction } from './client.js'
import { connectPostgres, type PostgresConnection } from './connect.js'
import type { PostgresPartitioningOptions } from './postgres-partitions.js'
import { createPostgresStore, postgresCapabilities } from './postgres-store.js'
import { type InboxRow, inboxEventFromRow, type OutboxRow, outboxEventFromRow } from './rows.js'

/** This package's version, from its package.json (the same file from `src/` and `dist/`). */
const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version

/** Options of {@link createConformanceTarget}. */
export interface PostgresConformanceOptions {
  /**
   * Internal test seam for the hand-written SQL mutants (test/mutants.test.ts): every
   * statement the store under test (and its peers) sends through `pool.query` passes through
   * this function first. Migrations, the caller's transaction clients and the oracle are not
   * rewritten. Production code never sets it.
   */
  readonly rewriteStatement?: ((text: string) => string) | undefined
  /**
   * Creates each fixture's tables instead of the store's `migrate()` (the default): for a
   * test that builds the schema another way, such as the DDL `migrationScripts` prints. The
   * schema does not exist yet when it runs.
   */
  readonly applySchema?: ((namespace: PostgresNamespace) => Promise<void>) | undefined
  /**
   * Runs every case on the time-partitioned layout (target `postgres-partitioned`): each
   * fixture's store, and its peers, are created with this option, so `migrate()` converts
   * the tables it has just created.
   */
  readonly partitioning?: PostgresPartitioningOptions | undefined
}

/** Where a fixture's tables go: `pool`, `schema` (fresh per fixture), `tablePrefix`. */
export interface PostgresNamespace {
  readonly pool: pg.Pool
  readonly schema: string
  readonly tablePrefix: string
}

/**
 * A query's text rewritten: a plain string, or a prepared statement's config, renamed with its
 * new text (a prepared name stands for one text on a connection).
 */
const rewriteQuery = (query: unknown, rewrite: (text: string) => string): unknown => {
  if (typeof query === 'string') return rewrite(query)
  if (typeof query !== 'object' || query === null || typeof (query as pg.QueryConfig).text !== 'string')
    return query
  const config = query as pg.QueryConfig
  const text = rewrite(config.text)
  return config.name === undefined ? { ...config, text } : { ...config, text, name: statementName(text) }
}

/** A view of `pool` whose `query` sends `rewrite(text)`; everything else is the pool itself. */
const rewritingPool = (pool: pg.Pool, rewrite: (text: string) => string): pg.Pool =>
  new Proxy(pool, {
    get(target, property) {
      if (property === 'query') {
        return (text: unknown, ...rest: unknown[]) =>
          (target.query as (...args: unknown[]) => unknown)(rewriteQuery(text, rewrite), ...rest)
      }
      const value: unknown = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })

/**
 * The conformance target of @txbox/postgres: one pool for the run, a fresh schema
 * `txbox_t_<suffix>` per fixture (dropped on dispose), and an oracle that reads the rows with
 * plain SELECTs.
 */
export const createConformanceTarget = (
  options: PostgresConformanceOptions = {},
): ConformanceTarget<PoolClient> => {
  const { rewriteStatement, applySchema, partitioning } = options
  const storePool = (pool: pg.Pool): pg.Pool =>
    rewriteStatement === undefined ? pool : rewritingPool(pool, rewriteStatement)
  let connection: PostgresConnection | undefined
  let url: string | undefined
  const requirePool = (): pg.Pool => {
    if (!connection) throw new Error('setup() was not called')
    return connection.client
  }
  return {
    name: partitioning === undefined ? 'postgres' : 'postgres-partitioned',
    version: VERSION,
    engine: 'postgres',
    capabilities: postgresCapabilities,
    async setup(server) {
      if (!server) throw new Error('the postgres target needs a server URL')
      url = server.url
      connection = connectPostgres(server.url, { poolSize: 10 })
      return { serverVersion: await connection.serverVersion() }
    },
    async create({ clock, onDispose }): Promise<ConformanceFixture<PoolClient>> {
      const db = requirePool()
      const schema = `txbox_t_${uniqueSuffix()}`
      const dropSchema = async () => {
        await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      }
      // Registered before migrate(): a migration that fails halfway leaves no schema behind.
      onDispose?.(dropSchema)
      const store = createPostgresStore({ pool: storePool(db), schema, clock, partitioning })
      if (applySchema === undefined) await store.migrate()
      else await applySchema({ pool: db, schema, tablePrefix: 'txbox_' })
      const outboxTable = `"${schema}"."txbox_outbox"`
      const inboxTable = `"${schema}"."txbox_inbox"`
      const oracle: Oracle = {
        async outbox(eventId) {
          const result = await db.query<OutboxRow>(`SELECT * FROM ${outboxTable} WHERE event_id = $1`, [
            encodeStoredText(eventId),
          ])
          const row = result.rows[0]
          return row ? outboxEventFromRow(row) : null
        },
        async inbox(eventId) {
          const result = await db.query<InboxRow>(`SELECT * FROM ${inboxTable} WHERE event_id = $1`, [
            encodeStoredText(eventId),
          ])
          const row = result.rows[0]
          return row ? inboxEventFromRow(row) : null
        },
        async outboxCount() {
          const result = await db.query<{ count: number }>(
            `SELECT count(*)::int AS count FROM ${outboxTable}`,
          )
          return result.rows[0]?.count ?? 0
        },
        async inboxCount() {
          const result = await db.query<{ count: number }>(`SELECT count(*)::int AS count FROM ${inboxTable}`)
          return result.rows[0]?.count ?? 0
        },
      }
      return {
        outbox: store.outbox,
        inbox: store.inbox,
        migrate: () => store.migrate(),
        oracle,
        // Its own pool: its claims run in sessions of their own, as another process's would.
        async peer() {
          const peerPool = new pg.Pool({ connectionString: url, max: 2 })
          const peerStore = createPostgresStore({ pool: storePool(peerPool), schema, clock, partitioning })
          let ended: Promise<void> | undefined
          const end = () => {
            ended ??= peerPool.end()
            return ended
          }
          // An ended pool is what a dead server leaves: pg refuses every next query.
          return { outbox: peerStore.outbox, inbox: peerStore.inbox, dispose: end, breakConnection: end }
        },
        transaction: (fn, options) => withTransaction(db, fn, { rollback: options?.rollback }),
        storeTransaction: store.transaction,
        // A client of another pool on another database of the same server (`postgres`, which
        // every server has; `template1` when the store's is `postgres`), inside its own BEGIN.
        async foreignTransaction(fn) {
          const otherUrl = new URL(url ?? '')
          otherUrl.pathname = otherUrl.pathname === '/postgres' ? '/template1' : '/postgres'
          const other = new pg.Pool({ connectionString: otherUrl.toString(), max: 1 })
          try {
            return await withTransaction(other, fn)
          } finally {
            await other.end()
          }
        },
        dispose: dropSchema,
      }
    },
    async teardown() {
      await connection?.close()
      connection = undefined
    },
  }
}
