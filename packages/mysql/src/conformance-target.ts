import { readFileSync } from 'node:fs'
import type { ConformanceFixture, ConformanceTarget, Oracle } from '@txbox/conformance'
import { uniqueSuffix } from '@txbox/conformance'
import type { InboxEvent, InboxStatus, OutboxEvent, OutboxStatus } from '@txbox/core'
import type { Pool, PoolConnection, RowDataPacket } from 'mysql2/promise'
import { connectMySql, type MySqlConnection } from './connect.js'
import { mySqlCapabilities } from './mysql-store.js'
import { MySqlTransactionDriver } from './transaction-driver.js'

/** The adapter's version, from its package.json (the same file from `src/` and `dist/`). */
const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version

// The oracle's own decoding of the stored columns, written apart from the adapter's mappers
// so that a mapping bug in the adapter cannot hide itself.
const READ = { dateStrings: true, supportBigNumbers: true, bigNumberStrings: true } as const
const utc = (value: unknown): Date => new Date(`${String(value).replace(' ', 'T')}Z`)
const has = (value: unknown): boolean => value !== null && value !== undefined

const outboxFromRow = (row: RowDataPacket): OutboxEvent => ({
  eventId: row.event_id,
  subject: row.subject,
  payload: row.payload,
  ...(has(row.headers) ? { headers: row.headers } : {}),
  status: row.status as OutboxStatus,
  enqueuedAt: utc(row.enqueued_at),
  ...(has(row.sent_at) ? { sentAt: utc(row.sent_at) } : {}),
  ...(has(row.error_message) ? { errorMessage: row.error_message } : {}),
  retryCount: Number(row.retry_count),
  availableAt: utc(row.available_at),
  ...(has(row.claimed_at) ? { claimedAt: utc(row.claimed_at) } : {}),
  ...(has(row.claimed_by) ? { claimedBy: row.claimed_by } : {}),
  ...(has(row.lease_until) ? { leaseUntil: utc(row.lease_until) } : {}),
  ...(has(row.ordering_key) ? { orderingKey: row.ordering_key, keySeq: Number(row.key_seq) } : {}),
})

const inboxFromRow = (row: RowDataPacket): InboxEvent => ({
  eventId: row.event_id,
  subject: row.subject,
  payload: row.payload,
  ...(has(row.headers) ? { headers: row.headers } : {}),
  ...(has(row.stream) ? { stream: row.stream, streamSeq: Number(row.stream_seq) } : {}),
  status: row.status as InboxStatus,
  receivedAt: utc(row.received_at),
  ...(has(row.processed_at) ? { processedAt: utc(row.processed_at) } : {}),
  deliveries: Number(row.deliveries),
  ...(has(row.error_message) ? { errorMessage: row.error_message } : {}),
  ...(has(row.claimed_at) ? { claimedAt: utc(row.claimed_at) } : {}),
  ...(has(row.claimed_by) ? { claimedBy: row.claimed_by } : {}),
  ...(has(row.lease_until) ? { leaseUntil: utc(row.lease_until) } : {}),
})

/** Options of {@link createConformanceTarget}. */
export interface MySqlConformanceTargetOptions {
  /** The target's name in reports (default `mysql`); `mysql8` for the MySQL 8 run beside MariaDB's. */
  readonly name?: string
  /**
   * The server family the run must be on (`MySQL`, `MariaDB`): a URL that reaches the other
   * fails `setup()`, so a report named `mysql8` is never a MariaDB run.
   */
  readonly family?: 'MySQL' | 'MariaDB'
  /**
   * Creates each fixture's tables instead of the store's `migrate()` (the default): for a
   * test that builds the schema another way, such as the DDL `migrationScripts` prints.
   */
  readonly applySchema?: ((namespace: MySqlNamespace) => Promise<void>) | undefined
}

/** Where a fixture's tables go: the fixture's own `pool` and a fresh `tablePrefix`. */
export interface MySqlNamespace {
  readonly pool: Pool
  readonly tablePrefix: string
}

/**
 * The conformance target of `@txbox/mysql`, on `connectMySql`. `setup` opens an admin
 * connection (server version, dropping fixtures); each fixture gets its own small pool and a
 * fresh table prefix, and closing that pool on `dispose` also frees its prepared statements,
 * which would otherwise pile up towards the server's `max_prepared_stmt_count` across
 * hundreds of prefixes.
 */
export const createConformanceTarget = (
  options: MySqlConformanceTargetOptions = {},
): ConformanceTarget<PoolConnection> => {
  let admin: MySqlConnection | undefined
  let url: string | undefined
  return {
    name: options.name ?? 'mysql',
    version: VERSION,
    engine: 'mysql',
    capabilities: mySqlCapabilities,
    async setup(server) {
      if (!server) throw new Error('the mysql target needs a server URL (TXBOX_MYSQL_URL)')
      url = server.url
      admin = connectMySql(url, { poolSize: 4 })
      const serverVersion = await admin.serverVersion()
      if (options.family && !serverVersion.startsWith(`${options.family} `))
        throw new Error(
          `target ${options.name ?? 'mysql'} needs ${options.family}, but ${url} is ${serverVersion}`,
        )
      // The store's limit is maxEventBytes (default 1 MiB), well under a default packet
      // (MariaDB 16 MiB, MySQL 64 MiB); a server with a smaller packet is reported, not hidden.
      const serverLimit = await admin.store.serverMaxEventBytes()
      const maxEventBytes = Math.min(mySqlCapabilities.maxEventBytes, serverLimit)
      return { serverVersion, capabilities: { ...mySqlCapabilities, maxEventBytes } }
    },
    async create({ clock }): Promise<ConformanceFixture<PoolConnection>> {
      if (!admin || !url) throw new Error('setup() has not run')
      const adminPool = admin.client
      const serverUrl = url
      const tablePrefix = `t_${uniqueSuffix()}_`
      const {
        store,
        client: pool,
        close,
      } = connectMySql(serverUrl, { poolSize: 12, prefix: tablePrefix, clock })
      // The fixture's transactions: the adapter's one transaction implementation.
      const transactions = new MySqlTransactionDriver(pool)
      const schema = options.applySchema?.({ pool, tablePrefix }) ?? store.migrate()
      await schema.catch(async (error: unknown) => {
        await close()
        throw error
      })
      const outboxTable = `\`${tablePrefix}outbox\``
      const inboxTable = `\`${tablePrefix}inbox\``
      const one = async (sql: string, id: string): Promise<RowDataPacket | undefined> => {
        const [rows] = await adminPool.query<RowDataPacket[]>({ sql, ...READ }, [id])
        return rows[0]
      }
      const count = async (table: string): Promise<number> => {
        const [rows] = await adminPool.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM ${table}`)
        return Number(rows[0]?.n)
      }
      const oracle: Oracle = {
        outbox: async (eventId) => {
          const row = await one(`SELECT * FROM ${outboxTable} WHERE event_id = ?`, eventId)
          return row ? outboxFromRow(row) : null
        },
        inbox: async (eventId) => {
          const row = await one(`SELECT * FROM ${inboxTable} WHERE event_id = ?`, eventId)
          return row ? inboxFromRow(row) : null
        },
        outboxCount: () => count(outboxTable),
        inboxCount: () => count(inboxTable),
      }
      return {
        outbox: store.outbox,
        inbox: store.inbox,
        migrate: () => store.migrate(),
        // Its own pool: its claims run in sessions of their own, as another process's would.
        async peer() {
          const peer = connectMySql(serverUrl, { poolSize: 2, prefix: tablePrefix, clock })
          // Ending the pool is what a dead server leaves: every next query fails in mysql2.
          return {
            outbox: peer.store.outbox,
            inbox: peer.store.inbox,
            dispose: peer.close,
            breakConnection: peer.close,
          }
        },
        transaction: (fn, options) => transactions.run(fn, { rollback: options?.rollback }),
        storeTransaction: store.transaction,
        // A connection of another pool on another database of the same server
        // (information_schema, which every account can open), inside its own transaction.
        async foreignTransaction(fn) {
          const otherUrl = new URL(serverUrl)
          otherUrl.pathname = '/information_schema'
          const other = connectMySql(otherUrl.toString(), { poolSize: 1, prefix: tablePrefix, clock })
          try {
            return await new MySqlTransactionDriver(other.client).run(fn)
          } finally {
            await other.close()
          }
        },
        oracle,
        async dispose() {
          try {
            await close()
          } finally {
            await adminPool.query(
              `DROP TABLE IF EXISTS ${outboxTable}, \`${tablePrefix}outbox_keys\`, ${inboxTable}, \`${tablePrefix}schema_version\``,
            )
          }
        },
      }
    },
    async teardown() {
      await admin?.close()
      admin = undefined
    },
  }
}
