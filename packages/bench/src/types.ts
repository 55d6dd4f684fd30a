import type { EnqueueParams, InboxParams, InboxRepository, OutboxRepository, StoreKind } from '@txbox/core'
import type { RelayEndpoint } from './raw-relay/types.js'

/** One claimer: an adapter store and the raw driver on the same connection (or client). */
export interface Claimer {
  readonly outbox: OutboxRepository<unknown>
  /** Claims up to `limit` due events by hand, then marks them sent; returns how many. */
  rawClaimAndMark(workerId: string, limit: number): Promise<number>
}

/** A store's fresh namespace (schema / prefix / table) holding both the adapter and its raw twin. */
export interface Namespace {
  readonly outbox: OutboxRepository<unknown>
  readonly inbox: InboxRepository<unknown>
  /** Where a relay process opens this namespace (its schema or prefix on the same server or file). */
  readonly endpoint: RelayEndpoint
  rawInsertOne(event: EnqueueParams): Promise<void>
  rawInsertMany(events: readonly EnqueueParams[]): Promise<void>
  /**
   * BEGIN; business insert `n`; the events enqueued in the transaction (`findOrCreate` for one,
   * `findOrCreateMany` for more; the raw side: one INSERT, multi-row for more); COMMIT.
   * A string = not run, with the reason.
   */
  readonly adapterTx: ((events: readonly EnqueueParams[], n: number) => Promise<void>) | string
  readonly rawTx: ((events: readonly EnqueueParams[], n: number) => Promise<void>) | string
  /** Why this store cannot run several transactions at once from one process (undefined: it can). */
  readonly concurrentTx?: string
  /** The k-th claimer (k = 0..3); stores open a separate connection per k where the driver allows. */
  claimer(k: number): Promise<Claimer>
  /** Fills the outbox with `events` due events that `rawClaimAndMark` (raw) or `claim` (adapter) sees. */
  prefill(events: readonly EnqueueParams[], forRaw: boolean): Promise<void>
  /** Raw inbox: insert-or-count-delivery, then mark processed (two statements, like the adapter's flow). */
  rawInboxClaimAndMark(message: InboxParams, workerId: string): Promise<void>
  dispose(): Promise<void>
}

/** Counts what the client sends: round trips, statements, commands or requests. */
export interface Counter {
  readonly unit: string
  reset(): void
  value(): number
}

export interface Target {
  readonly name: StoreKind
  readonly serverVersion: string
  readonly counter: Counter
  /** Workload scale relative to the default sizes (slow stores do less work per run). */
  readonly scale: number
  /** At most this many timed runs (slow servers), else the run's setting. */
  readonly maxRuns?: number
  /** Events per relay run at full size (default 20,000). */
  readonly relayEvents?: number
  namespace(): Promise<Namespace>
  close(): Promise<void>
}
