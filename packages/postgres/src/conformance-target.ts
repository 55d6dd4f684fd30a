import type { ConformanceFixture, ConformanceTarget, Oracle } from '@txbox/conformance'
import { uniqueSuffix } from '@txbox/conformance'
import { encodeStoredText } from '@txbox/core'
import type { PoolClient } from 'pg'
import pg from 'pg'
import { createPostgresStore, postgresCapabilities } from './postgres-store.js'
import { type InboxRow, inboxEventFromRow, type OutboxRow, outboxEventFromRow } from './rows.js'

/** Options of {@link createConformanceTarget}. */
export interface PostgresConformanceOptions {
  /**
   * Internal test seam for the hand-written SQL mutants (test/mutants.test.ts): every
   * statement the store under test (and its peers) sends through `pool.query` passes through
   * this function first. Migrations, the caller's transaction clients and the oracle are not
   * rewritten. Production code never sets it.
   */
  readonly rewriteStatement?: ((text: string) => string) | undefined
}

/** A view of `pool` whose `query` sends `rewrite(text)`; everything else is the pool itself. */
const rewritingPool = (pool: pg.Pool, rewrite: (text: string) => string): pg.Pool =>
  new Proxy(pool, {
    get(target, property) {
      if (property === 'query') {
        return (text: unknown, ...rest: unknown[]) =>
          (target.query as (...args: unknown[]) => unknown)(
            typeof text === 'string' ? rewrite(text) : text,
            ...rest,
          )
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
  const { rewriteStatement } = options
  const storePool = (pool: pg.Pool): pg.Pool =>
    rewriteStatement === undefined ? pool : rewritingPool(pool, rewriteStatement)
  let pool: pg.Pool | undefined
  let url: string | undefined
  const requirePool = (): pg.Pool => {
    if (!pool) throw new Error('setup() was not called')
    return pool
  }
  return {
    name: 'postgres',
    version: '0.1.0',
    engine: 'postgres',
    capabilities: postgresCapabilities,
    async setup(server) {
      if (!server) throw new Error('the postgres target needs a server URL')
      url = server.url
      pool = new pg.Pool({ connectionString: server.url, max: 10 })
      const result = await pool.query<{ server_version: string }>('SHOW server_version')
      return { serverVersion: `PostgreSQL ${result.rows[0]?.server_version ?? 'unknown'}` }
    },
    async create({ clock, onDispose }): Promise<ConformanceFixture<PoolClient>> {
      const db = requirePool()
      const schema = `txbox_t_${uniqueSuffix()}`
      const dropSchema = async () => {
        await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      }
      // Registered before migrate(): a migration that fails halfway leaves no schema behind.
      onDispose?.(dropSchema)
      const store = createPostgresStore({ pool: storePool(db), schema, clock })
      await store.migrate()
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
          const peerStore = createPostgresStore({ pool: storePool(peerPool), schema, clock })
          let ended: Promise<void> | undefined
          const end = () => {
            ended ??= peerPool.end()
            return ended
          }
          // An ended pool is what a dead server leaves: pg refuses every next query.
          return { outbox: peerStore.outbox, inbox: peerStore.inbox, dispose: end, breakConnection: end }
        },
        async transaction(fn, options) {
          const client = await db.connect()
          let broken: Error | undefined
          // A client whose BEGIN, COMMIT or ROLLBACK failed is destroyed, not reused.
          const end = async (command: 'COMMIT' | 'ROLLBACK') => {
            try {
              await client.query(command)
            } catch (error) {
              broken = error instanceof Error ? error : new Error(String(error))
              throw error
            }
          }
          try {
            await client.query('BEGIN')
            let result: Awaited<ReturnType<typeof fn>>
            try {
              result = await fn(client)
            } catch (error) {
              await end('ROLLBACK')
              throw error
            }
            await end(options?.rollback ? 'ROLLBACK' : 'COMMIT')
            return result
          } finally {
            client.release(broken)
          }
        },
        dispose: dropSchema,
      }
    },
    async teardown() {
      await pool?.end()
      pool = undefined
    },
  }
}
