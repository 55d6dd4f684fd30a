/** Counters of an {@link OutboxRelay} since it was created. */
export interface RelayCounters {
  /** Claims made (one per loop turn that reached the store). */
  claims: number
  /** Events claimed. */
  claimed: number
  /** Events published and marked `sent` by this relay. */
  published: number
  /** Publishes the transport answered as duplicates (deduplicated, counted as success). */
  duplicates: number
  /** Publish attempts that failed. */
  failed: number
  /** Events put back with backoff (`retryLater`). */
  retried: number
  /** Events dead-lettered (`markAsFailed`) after `maxAttempts`. */
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
  /** Age of the oldest due `pending` event (from `findPending({ limit: 1 })`); null when none or the store failed. */
  oldestPendingAgeMs: number | null
  /** When the loop last made progress (epoch ms, from the relay's clock); null before start. */
  lastTickAt: number | null
}

/** The counters at zero. */
export const zeroCounters = (): RelayCounters => ({
  claims: 0,
  claimed: 0,
  published: 0,
  duplicates: 0,
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
