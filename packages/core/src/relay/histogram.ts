/** Upper bounds of the latency buckets, in milliseconds (the last bucket, +Inf, is implied). */
export const LATENCY_BUCKETS_MS: readonly number[] = Object.freeze([
  1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000,
])

/** A latency histogram at one instant, cumulative as Prometheus exposes it. */
export interface HistogramSnapshot {
  /** Bucket upper bounds in milliseconds, ascending. */
  bucketsMs: readonly number[]
  /** Observations <= each bound (cumulative), same length as `bucketsMs`. */
  counts: number[]
  /** Sum of all observations in milliseconds. */
  sumMs: number
  /** Number of observations (the +Inf bucket). */
  count: number
}

/**
 * Latency observations kept by the relay itself, so that `metrics()` and the Prometheus
 * exporter (which may be created long after the relay started) see every observation.
 */
export class LatencyHistogram {
  readonly #bucketsMs: readonly number[]
  readonly #perBucket: number[]
  #sumMs = 0
  #count = 0

  constructor(bucketsMs: readonly number[] = LATENCY_BUCKETS_MS) {
    this.#bucketsMs = bucketsMs
    this.#perBucket = bucketsMs.map(() => 0)
  }

  observe(ms: number): void {
    const value = Math.max(0, ms)
    this.#sumMs += value
    this.#count++
    const index = this.#bucketsMs.findIndex((bound) => value <= bound)
    if (index >= 0) this.#perBucket[index] = (this.#perBucket[index] ?? 0) + 1
  }

  snapshot(): HistogramSnapshot {
    let running = 0
    const counts = this.#perBucket.map((count) => {
      running += count
      return running
    })
    return { bucketsMs: this.#bucketsMs, counts, sumMs: this.#sumMs, count: this.#count }
  }
}

/** Whether a metrics field holds a {@link HistogramSnapshot} (how the exporter recognises one). */
export const isHistogramSnapshot = (value: unknown): value is HistogramSnapshot => {
  if (value === null || typeof value !== 'object') return false
  const candidate = value as Partial<HistogramSnapshot>
  return (
    Array.isArray(candidate.bucketsMs) &&
    Array.isArray(candidate.counts) &&
    typeof candidate.sumMs === 'number' &&
    typeof candidate.count === 'number'
  )
}
