import type { OutboxCounts } from '../outbox.js'
import type { HistogramSnapshot } from './histogram.js'

/** Counters of an {@link OutboxRelay} since it was created. */
export interface RelayCounters {
  /** Claims made (one per loop turn that reached the store). */
  claims: number
  /** Events claimed. */
  claimed: number
  /** Events published and marked `sent` by this relay. */
  published: number
  /** Publishes the transport answered as duplicates (every kind: verified, unverified, conflicts). */
  duplicates: number
  /**
   * Duplicates whose stored message is a different one (another message holds the event's
   * id in the dedup window): the event was not delivered and was dead-lettered.
   */
  duplicateConflicts: number
  /** Duplicates whose stored message could not be read (purged, no permission): counted as delivered. */
  duplicatesUnverified: number
  /** Publish attempts that failed. */
  failed: number
  /** Events put back with backoff (`retryLater`). */
  retried: number
  /** Events dead-lettered (`markAsFailed`) by this relay, for any reason (see `deadLettered`). */
  dead: number
  /** Events this relay stopped working on because its lease was gone (renewal or fenced write). */
  leaseLost: number
  /** Store calls that failed (claim, marks, maintenance); the loop goes on. */
  storeErrors: number
  /** Events moved back by the periodic `resetStale`. */
  staleReset: number
  /** Sent events deleted by the periodic retention `cleanup`. */
  cleanedUp: number
}

/** A point-in-time view of a relay, from {@link OutboxRelay.metrics}. */
export interface RelayMetrics extends RelayCounters {
  /** The relay's worker id. */
  workerId: string
  /** `idle` before start, `running`, `stopping` (draining), `stopped`. */
  state: 'idle' | 'running' | 'stopping' | 'stopped'
  /** Events currently being published. */
  inFlight: number
  /** Claim round-trip time: the last one, the mean, and the worst, in milliseconds. */
  claimLatencyMs: { last: number; mean: number; max: number }
  /** Every claim's round-trip time. */
  claimDuration: HistogramSnapshot
  /** Every publish's time until the transport answered (success or failure). */
  publishDuration: HistogramSnapshot
  /** Failed publishes by reason (`timeout`, `no-stream`, `rejected`, `too-large`, `error`, ...). */
  publishFailures: Record<string, number>
  /** Events dead-lettered by this relay, by reason: `max-attempts`, `too-large`, `duplicate-conflict`, `subject-map`, or a permanent publish failure's reason. */
  deadLettered: Record<string, number>
  /**
   * Events published through each entry of a subject-map table, keyed `from -> to` (the
   * publish was acknowledged; every entry is listed from the start, at 0). Counted per
   * entry, not per subject: subjects can carry ids, and a series per id would be unbounded.
   */
  publishedByMapEntry: Record<string, number>
  /** The limit the next claim asks for (bounded by `batchSize` and by bytes; see `maxBatchBytes`). */
  claimLimit: number
  /** Bytes (payload + headers, UTF-8) of the last claimed batch. */
  lastBatchBytes: number
  /**
   * Age of the oldest due `pending` event (from `findPending({ limit: 1 })`); 0 when none is
   * due, null only when the store could not be read.
   */
  oldestPendingAgeMs: number | null
  /** The store's events per status (`getCountByStatus()`); null when the store could not be read. */
  outboxEvents: OutboxCounts | null
  /** When the loop last made progress (epoch ms, from the relay's clock); null before start. */
  lastTickAt: number | null
}

/** The counters at zero. */
export const zeroCounters = (): RelayCounters => ({
  claims: 0,
  claimed: 0,
  published: 0,
  duplicates: 0,
  duplicateConflicts: 0,
  duplicatesUnverified: 0,
  failed: 0,
  retried: 0,
  dead: 0,
  leaseLost: 0,
  storeErrors: 0,
  staleReset: 0,
  cleanedUp: 0,
})

/** The result of a health check: `ok` only when every part is. */
export interface HealthReport {
  ok: boolean
  /** The store answered a cheap query (`getCountByStatus`). */
  store: { ok: boolean; detail?: string | undefined }
  /** The transport reports itself usable (NATS connected). */
  publisher: { ok: boolean; detail?: string | undefined }
  /** The loop made progress recently. */
  loop: { ok: boolean; lastTickAgoMs: number | null; detail?: string | undefined }
}
