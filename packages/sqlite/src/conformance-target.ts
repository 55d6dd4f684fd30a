import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  type ConformanceFixture,
  type ConformanceTarget,
  type Oracle,
  type TargetInfo,
  uniqueSuffix,
} from '@txbox/conformance'
import type { InboxEvent, InboxStatus, OutboxEvent, OutboxStatus } from '@txbox/core'
import Database from 'better-sqlite3'
import type { SqliteDatabase } from './sqlite-options.js'
import { createSqliteStore, sqliteCapabilities } from './sqlite-store.js'

/** The adapter's version, from its package.json (the same file from `src/` and `dist/`). */
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string
}

/** Raw columns, mapped here on purpose without the repositories' code (the oracle must not share their bugs). */
type Raw = Record<string, string | number | null>

const text = (row: Raw, column: string): string => row[column] as string
const optionalText = (row: Raw, column: string): string | undefined =>
  (row[column] ?? undefined) as string | undefined
const date = (row: Raw, column: string): Date => new Date(row[column] as number)
const optionalDate = (row: Raw, column: string): Date | undefined =>
  row[column] === null ? undefined : new Date(row[column] as number)

/** Drops `undefined` members so that results compare equal to the adapter's (exactOptionalPropertyTypes). */
const defined = <T extends object>(value: T): T =>
  Object.fromEntries(Object.entries(value).filter(([, member]) => member !== undefined)) as T

const rawOutbox = (row: Raw): OutboxEvent =>
  defined({
    eventId: text(row, 'event_id'),
    subject: text(row, 'subject'),
    payload: text(row, 'payload'),
    headers: optionalText(row, 'headers'),
    status: text(row, 'status') as OutboxStatus,
    enqueuedAt: date(row, 'enqueued_at'),
    sentAt: optionalDate(row, 'sent_at'),
    errorMessage: optionalText(row, 'error_message'),
    retryCount: row.retry_count as number,
    availableAt: date(row, 'available_at'),
    claimedAt: optionalDate(row, 'claimed_at'),
    claimedBy: optionalText(row, 'claimed_by'),
    leaseUntil: optionalDate(row, 'lease_until'),
    orderingKey: optionalText(row, 'ordering_key'),
    keySeq: (row.key_seq ?? undefined) as number | undefined,
  } as OutboxEvent)

const rawInbox = (row: Raw): InboxEvent =>
  defined({
    eventId: text(row, 'event_id'),
    subject: text(row, 'subject'),
    payload: text(row, 'payload'),
    headers: optionalText(row, 'headers'),
    stream: optionalText(row, 'stream'),
    streamSeq: (row.stream_seq ?? undefined) as number | undefined,
    status: text(row, 'status') as InboxStatus,
    receivedAt: date(row, 'received_at'),
    processedAt: optionalDate(row, 'processed_at'),
    deliveries: row.deliveries as number,
    errorMessage: optionalText(row, 'error_message'),
    claimedAt: optionalDate(row, 'claimed_at'),
    claimedBy: optionalText(row, 'claimed_by'),
    leaseUntil: optionalDate(row, 'lease_until'),
  } as InboxEvent)

/** Options of {@link createConformanceTarget}. */
export interface SqliteConformanceOptions {
  /**
   * Internal test seam for the hand-written SQL mutants (test/mutants.test.ts): every
   * statement the store under test (and its peers) prepares passes through this function
   * first (the oracle's statements are not). Production code never sets it.
   */
  readonly rewriteStatement?: ((text: string) => string) | undefined
  /**
   * Creates each fixture's tables instead of the store's `migrate()` (the default): for a
   * test that builds the schema another way, such as the DDL `migrationScripts` prints.
   */
  readonly applySchema?: ((namespace: SqliteNamespace) => Promise<void> | void) | undefined
}

/** Where a fixture's tables go: the connection `db` (the shared file) and a fresh `tablePrefix`. */
export interface SqliteNamespace {
  readonly db: SqliteDatabase
  readonly tablePrefix: string
}

/** A view of `db` whose `prepare` compiles `rewrite(text)`; everything else is the connection itself. */
const rewritingDatabase = (db: SqliteDatabase, rewrite: (text: string) => string): SqliteDatabase =>
  new Proxy(db, {
    get(target, property) {
      if (property === 'prepare') return (text: string) => target.prepare(rewrite(text))
      const value: unknown = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })

/**
 * The SQLite conformance target. One temporary database FILE per run (WAL, so the suite
 * exercises the real file path, not `:memory:`), and per fixture a unique table prefix,
 * which also proves isolation by prefix. Each fixture has its own connection, so its
 * `transaction()` can only ever hold its own writes, and the oracle reads through another
 * connection: it sees only what was committed, as a second process would. Each peer is one
 * more connection to the file.
 */
export const createConformanceTarget = (
  options: SqliteConformanceOptions = {},
): ConformanceTarget<SqliteDatabase> => {
  const { rewriteStatement, applySchema } = options
  // The store's own view of a connection; the same object is its transaction handle.
  const storeView = (db: SqliteDatabase): SqliteDatabase =>
    rewriteStatement === undefined ? db : rewritingDatabase(db, rewriteStatement)
  let directory: string | undefined
  const open = new Set<SqliteDatabase>()

  const connect = (): SqliteDatabase => {
    directory ??= mkdtempSync(join(tmpdir(), 'txbox-sqlite-conformance-'))
    const db = new Database(join(directory, 'conformance.db'), { timeout: 10_000 })
    db.pragma('journal_mode = WAL')
    // Durable enough for a throw-away test file, and much faster than FULL on slow disks.
    db.pragma('synchronous = NORMAL')
    open.add(db)
    return db
  }

  const close = (db: SqliteDatabase): void => {
    open.delete(db)
    if (db.open) db.close()
  }

  return {
    name: 'sqlite',
    version,
    capabilities: sqliteCapabilities,

    async setup(): Promise<TargetInfo> {
      const db = connect()
      const row = db.prepare<[], { version: string }>('SELECT sqlite_version() AS version').get()
      // What a store users create promises (its size limit included), not only the constant.
      const { capabilities } = createSqliteStore({ db })
      close(db)
      return { serverVersion: `SQLite ${row?.version ?? 'unknown'}`, capabilities }
    },

    async create({ clock }): Promise<ConformanceFixture<SqliteDatabase>> {
      const connection = connect()
      const db = storeView(connection)
      const reader = connect()
      const tablePrefix = `t_${uniqueSuffix()}_`
      const store = createSqliteStore({ db, tablePrefix, clock })
      if (applySchema === undefined) await store.migrate()
      else await applySchema({ db: connection, tablePrefix })
      const outboxTable = `${tablePrefix}outbox`
      const inboxTable = `${tablePrefix}inbox`

      const oracle: Oracle = {
        async outbox(eventId) {
          const row = reader
            .prepare<[string], Raw>(`SELECT * FROM ${outboxTable} WHERE event_id = ?`)
            .get(eventId)
          return row === undefined ? null : rawOutbox(row)
        },
        async inbox(eventId) {
          const row = reader
            .prepare<[string], Raw>(`SELECT * FROM ${inboxTable} WHERE event_id = ?`)
            .get(eventId)
          return row === undefined ? null : rawInbox(row)
        },
        async outboxCount() {
          return reader.prepare(`SELECT COUNT(*) FROM ${outboxTable}`).pluck().get() as number
        },
        async inboxCount() {
          return reader.prepare(`SELECT COUNT(*) FROM ${inboxTable}`).pluck().get() as number
        },
      }

      return {
        outbox: store.outbox,
        inbox: store.inbox,
        migrate: () => store.migrate(),
        oracle,
        // Another connection to the same file, as a second process would open it.
        async peer() {
          const peerDb = connect()
          const peerStore = createSqliteStore({ db: storeView(peerDb), tablePrefix, clock })
          return {
            outbox: peerStore.outbox,
            inbox: peerStore.inbox,
            dispose: async () => close(peerDb),
            // A closed better-sqlite3 handle throws on every next statement.
            breakConnection: async () => close(peerDb),
          }
        },
        async transaction(fn, options) {
          db.exec('BEGIN IMMEDIATE')
          try {
            const result = await fn(db)
            db.exec(options?.rollback === true ? 'ROLLBACK' : 'COMMIT')
            return result
          } catch (error) {
            if (db.inTransaction) db.exec('ROLLBACK')
            throw error
          }
        },
        storeTransaction: store.transaction,
        // Another connection to the same file, inside its own transaction: a write cannot join
        // a transaction open on another connection.
        async foreignTransaction(fn) {
          const other = connect()
          try {
            other.exec('BEGIN')
            const result = await fn(other)
            other.exec('COMMIT')
            return result
          } finally {
            close(other)
          }
        },
        async dispose() {
          try {
            if (db.open) {
              if (db.inTransaction) db.exec('ROLLBACK')
              db.exec(
                `DROP TABLE IF EXISTS ${outboxTable}; DROP TABLE IF EXISTS ${inboxTable};` +
                  ` DROP TABLE IF EXISTS ${outboxTable}_keys;` +
                  ` DROP TABLE IF EXISTS ${tablePrefix}schema_version;`,
              )
            }
          } finally {
            close(reader)
            close(connection)
          }
        },
      }
    },

    async teardown() {
      for (const db of [...open]) close(db)
      if (directory !== undefined) rmSync(directory, { recursive: true, force: true })
      directory = undefined
    },
  }
}
