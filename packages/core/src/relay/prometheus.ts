import { ValidationError } from '../errors.js'
import type { HistogramSnapshot } from './histogram.js'
import { COUNTERS, type Field, fieldsOf, LABELLED, snake } from './metric-fields.js'

/** Anything with a metrics snapshot of numeric fields: an OutboxRelay or an InboxProcessor. */
export interface MetricsSource {
  readonly workerId: string
  metrics(): Promise<object>
}

/**
 * The part of a prom-client `Registry` txbox uses. Declared here so that core's public
 * types do not require prom-client to be installed.
 */
export interface PromRegistry {
  metrics(): Promise<string>
  readonly contentType: string
}

/** Options of {@link createPrometheusExporter}. */
export interface PrometheusOptions {
  /** `txbox_relay_*` metrics from this relay. */
  relay?: MetricsSource | undefined
  /** `txbox_inbox_*` metrics from this processor. */
  processor?: MetricsSource | undefined
  /** Register into this prom-client Registry (default: a new one). */
  registry?: PromRegistry | undefined
  /** Also collect prom-client's default process metrics (default false). */
  defaultMetrics?: boolean | undefined
}

/** What {@link createPrometheusExporter} returns: text for a `/metrics` endpoint. */
export interface PrometheusExporter {
  readonly registry: PromRegistry
  /** The `Content-Type` of {@link PrometheusExporter.metrics}. */
  readonly contentType: string
  /** The exposition text. */
  metrics(): Promise<string>
}

/** What the relay series an operator alerts on mean (the others are described by their field name). */
const HELP: Readonly<Record<string, string>> = {
  oldestPendingAgeMs:
    'age in ms of the oldest due pending event; 0 when none is due, absent when the store could not be read',
  outboxEvents: "events in the outbox per status (the store's getCountByStatus)",
  deadLettered: 'events this relay dead-lettered, by reason',
  publishFailures: 'failed publishes, by reason',
  publishedByMapEntry: 'events published through each subject-map entry ("from -> to")',
  duplicates: 'publishes JetStream answered as duplicates (verified, unverified and conflicts)',
  duplicateConflicts:
    'duplicates whose stored message is a different one: the event was not delivered and was dead-lettered',
  duplicatesUnverified: 'duplicates whose stored message could not be read, counted as delivered',
  claimDuration: 'claim round-trip time',
  publishDuration: 'time from publish to the PubAck (or the failure)',
  claimLimit: 'events the next claim asks for (bounded by batchSize and maxBatchBytes)',
}

/** A histogram in Prometheus form (seconds, cumulative `le` buckets, `_sum`, `_count`). */
const histogramValues = (name: string, labels: Record<string, string>, histogram: HistogramSnapshot) => [
  ...histogram.bucketsMs.map((boundMs, index) => ({
    metricName: `${name}_bucket`,
    labels: { ...labels, le: boundMs / 1_000 },
    value: histogram.counts[index] ?? 0,
  })),
  { metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: histogram.count },
  { metricName: `${name}_sum`, labels, value: histogram.sumMs / 1_000 },
  { metricName: `${name}_count`, labels, value: histogram.count },
]

/**
 * Prometheus exposition of relay and processor metrics through `prom-client`, an optional
 * peer dependency loaded only when this is called. One scrape reads each snapshot once
 * (the relay's: two store reads). Every series reflects that scrape's snapshot: a
 * value that is unknown now (null) is left out of the scrape rather than repeating the
 * last one, and latency histograms (`*_duration_seconds`) are kept by the relay itself,
 * so the exporter sees observations made before it was created.
 */
export const createPrometheusExporter = async (options: PrometheusOptions): Promise<PrometheusExporter> => {
  let client: typeof import('prom-client')
  try {
    client = await import('prom-client')
  } catch (error) {
    throw new ValidationError(
      'relay',
      'Prometheus metrics need the optional peer `prom-client`: npm i prom-client',
      {
        cause: error,
      },
    )
  }
  const registry = (options.registry as import('prom-client').Registry | undefined) ?? new client.Registry()
  if (options.defaultMetrics) client.collectDefaultMetrics({ register: registry })
  const sources: [string, MetricsSource][] = []
  if (options.relay) sources.push(['relay', options.relay])
  if (options.processor) sources.push(['inbox', options.processor])
  for (const [component, source] of sources) {
    // The field list comes from a first snapshot (null and labelled fields included); the
    // values are read again on every scrape.
    const first = fieldsOf(await source.metrics())
    let pending: Promise<Map<string, Field>> | undefined
    // Every metric's collect() of one scrape shares one snapshot.
    const read = (): Promise<Map<string, Field>> => {
      pending ??= source.metrics().then((snapshot) => {
        queueMicrotask(() => {
          pending = undefined
        })
        return fieldsOf(snapshot)
      })
      return pending
    }
    const labels = { worker_id: source.workerId }
    for (const [field, shape] of first) {
      const counter = COUNTERS.has(field)
      const help = `txbox ${component} ${(component === 'relay' ? HELP[field] : undefined) ?? field}`
      if (shape.kind === 'histogram') {
        const name = `txbox_${component}_${snake(field)}_seconds`
        // prom-client's Histogram can only observe; the relay's buckets are already counted,
        // so this metric hands the registry their current values at each scrape.
        registry.registerMetric({
          name,
          help,
          type: 'histogram',
          aggregator: 'sum',
          get: async () => {
            const current = (await read()).get(field)
            const values = current?.kind === 'histogram' ? histogramValues(name, labels, current.value) : []
            return { name, help, type: 'histogram', aggregator: 'sum', values }
          },
          reset: () => {},
        } as unknown as import('prom-client').Metric)
        continue
      }
      const base = `txbox_${component}_${snake(field)}`
      const label = shape.kind === 'labelled' ? LABELLED[field] : undefined
      const labelNames = label === undefined ? ['worker_id'] : ['worker_id', label]
      // Reset first: a series shows this scrape's value or is absent, never a stale one
      // (a gauge whose value turned null used to keep its last number forever).
      const fill = async (
        reset: () => void,
        put: (series: Record<string, string>, value: number) => void,
      ) => {
        const current = (await read()).get(field)
        reset()
        if (current === undefined || current.value === null) return
        if (current.kind === 'number') put(labels, current.value)
        else if (current.kind === 'labelled' && label !== undefined)
          for (const [key, value] of Object.entries(current.value)) put({ ...labels, [label]: key }, value)
      }
      if (counter)
        new client.Counter({
          name: `${base}_total`,
          help,
          labelNames,
          registers: [registry],
          async collect() {
            await fill(
              () => this.reset(),
              (series, value) => this.inc(series, value),
            )
          },
        })
      else
        new client.Gauge({
          name: base,
          help,
          labelNames,
          registers: [registry],
          async collect() {
            await fill(
              () => this.reset(),
              (series, value) => this.set(series, value),
            )
          },
        })
    }
  }
  return { registry, contentType: registry.contentType, metrics: () => registry.metrics() }
}
