import type {
  Capabilities,
  Clock,
  InboxEvent,
  InboxRepository,
  OutboxEvent,
  OutboxRepository,
  TransactionFunction,
  TransactionOptions,
} from '@txbox/core'

/** A database server a target needs; embedded stores (SQLite, memory) need none. */
export type ServerEngine = 'postgres' | 'mysql' | 'mongodb' | 'redis' | 'dynamodb' | 'nats'

/** Where a target's server was found. */
export interface ServerConnection {
  readonly engine: ServerEngine
  /** A driver connection string: `postgres://...`, `mysql://...`, `mongodb://...`, `redis://...`, `http://...` (DynamoDB). */
  readonly url: string
  /** How it was found: an explicit URL (`--url` or `TXBOX_<ENGINE>_URL`) or a container started for this run. */
  readonly source: 'option' | 'env' | 'testcontainers'
  /** The image of the container, when `source` is `testcontainers`. */
  readonly image?: string
}

/** What a target learned when it connected, for the report. */
export interface TargetInfo {
  /** e.g. `PostgreSQL 15.8`, `MariaDB 10.11.6`, `FerretDB 1.24.2 (MongoDB 7.0.77 wire)`. */
  readonly serverVersion?: string
  /**
   * Capabilities detected at run time, when they depend on the deployment (e.g. MongoDB
   * transactions need a replica set). Replaces the target's static `capabilities`.
   */
  readonly capabilities?: Capabilities
}

/**
 * A reader that bypasses the adapter: each target implements it with raw driver calls
 * (a plain SELECT, HGETALL, GetItem...) so the suite checks what was really stored and an
 * adapter cannot hide a bug by reading its own bad data. It decodes the adapter's storage
 * format (column types, lossless text escapes) but applies none of its logic.
 */
export interface Oracle {
  /**
   * The stored outbox row, or null; with `orderingKey` and `keySeq` as stored (both absent,
   * not null, on an event without a key): the `outbox.ordering.*` cases compare them with
   * what the adapter answered.
   */
  outbox(eventId: string): Promise<OutboxEvent | null>
  /** The stored inbox row, or null. */
  inbox(eventId: string): Promise<InboxEvent | null>
  /** How many outbox rows are stored in this fixture's namespace. */
  outboxCount(): Promise<number>
  /** How many inbox rows are stored in this fixture's namespace. */
  inboxCount(): Promise<number>
}

/**
 * A second instance of the adapter on a fixture's namespace, over its own connection, as a
 * second process of the application would open it: the cases that race claims across
 * connections use it beside the fixture.
 */
export interface ConformancePeer<Tx = unknown> {
  readonly outbox: OutboxRepository<Tx>
  readonly inbox: InboxRepository<Tx>
  /** Closes its connection (never drops the namespace). The suite calls it before disposing the fixture. */
  dispose(): Promise<void>
  /**
   * Optional: leaves this peer's connection, pool or client as a dead server or a killed
   * client would (closed, ended, destroyed), so its repositories' next calls fail in the
   * driver. The `*.errors.driver-failure` cases then check that each failure surfaces as
   * `StorageError` with the driver's error as `cause`; without it they are skipped and the
   * `driver-errors` area is not certified. `dispose()` must still resolve afterwards.
   */
  breakConnection?(): Promise<void>
}

/**
 * One isolated store (its own schema, table prefix, key prefix or table) with its schema
 * already migrated. Every case gets a fresh one.
 */
export interface ConformanceFixture<Tx = unknown> {
  readonly outbox: OutboxRepository<Tx>
  readonly inbox: InboxRepository<Tx>
  /** Runs the adapter's `migrate()` again on this namespace. */
  migrate(): Promise<void>
  /**
   * Runs `fn(tx)` inside the store's own transaction, then commits, or rolls back when
   * `rollback` is true (returning what `fn` returned). If `fn` throws it rolls back and
   * rethrows. Stores whose capability is `transactions: 'none'` may throw. Two calls MUST be
   * able to be open at once (each on its own connection, session, collector or MULTI), unless
   * the store's claim capability is `single-writer` (`outbox.tx.two-open-transactions`).
   */
  transaction<T>(fn: (tx: Tx) => Promise<T>, options?: { rollback?: boolean }): Promise<T>
  /**
   * Optional: the store's own `store.transaction`, when it has one. The
   * `outbox.tx.store-transaction-joins` case checks that the writes made inside it without
   * `{ tx }` join it, `outbox.tx.store-transaction-isolated` that a write from another async
   * context while it is open does not; a target without it gets both cases skipped, so its
   * `transactions` area is not certified.
   */
  storeTransaction?<T>(fn: TransactionFunction<Tx, T>, options?: TransactionOptions): Promise<T>
  /**
   * Optional: runs `fn(tx)` with `tx` an OPEN transaction handle of the store's own kind that
   * the store must refuse because it belongs elsewhere (a pg client or mysql2 connection on
   * another database, another `Database` object, a session of another MongoClient, a MULTI
   * of a client on another server or database, a collector or transaction of another store),
   * then commits that transaction and closes what it opened. `outbox.tx.foreign-handle-refused`
   * checks that every `{ tx }` write with it is a `ValidationError` and writes nothing, even
   * after the commit; a target without it gets the case skipped, so its `transactions` area
   * is not certified.
   */
  foreignTransaction?<T>(fn: (tx: Tx) => Promise<T>): Promise<T>
  readonly oracle: Oracle
  /**
   * Opens a second store instance on this fixture's namespace (already migrated) over its
   * OWN connection, client, pool or database handle; each call opens another. A target
   * without it gets the cross-connection claim cases skipped, so its `claim` area is not
   * certified.
   */
  peer?(): Promise<ConformancePeer<Tx>>
  /** Drops this fixture's namespace and releases what it holds. */
  dispose(): Promise<void>
}

/**
 * An adapter under certification. Our adapters export one from `@txbox/<db>/conformance`
 * as `createConformanceTarget()`; a third party writes the same in its own module and runs
 * `txbox-conformance run --target ./its-module.js`.
 */
export interface ConformanceTarget<Tx = unknown> {
  /** The adapter's name, e.g. `postgres`. */
  readonly name: string
  /** The adapter package's version, for the report. */
  readonly version?: string
  /** The server it needs; provisioning finds one (URL, testcontainers) or reports the target as not run. */
  readonly engine?: ServerEngine
  /** The adapter's static capabilities. */
  readonly capabilities: Capabilities
  /** Connects once before the cases run. `server` is given when `engine` is set. */
  setup?(server: ServerConnection | undefined): Promise<TargetInfo | undefined>
  /**
   * Creates an isolated, migrated fixture whose repositories use `clock`. `onDispose`
   * registers a cleanup the suite runs after the case even when `create()` then throws:
   * register the namespace's removal as soon as it exists, so a migration that fails
   * midway leaves nothing behind.
   */
  create(options: {
    clock: Clock
    onDispose?: (cleanup: () => unknown) => void
  }): Promise<ConformanceFixture<Tx>>
  /** Closes what `setup` opened. */
  teardown?(): Promise<void>
}

/** The shape of a target module: what `--target ./module.js` must export. */
export interface ConformanceTargetModule {
  createConformanceTarget(): ConformanceTarget | Promise<ConformanceTarget>
}

/** A short random suffix for namespaces, so parallel test files never share tables or keys. */
export const uniqueSuffix = (): string =>
  `${Date.now().toString(36)}${Math.floor(Math.random() * 36 ** 6)
    .toString(36)
    .padStart(6, '0')}`
