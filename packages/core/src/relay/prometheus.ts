import { ValidationError } from '../errors.js'

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

/** Snapshot fields that only grow: exported as counters (`_total`). */
const COUNTERS = new Set([
  'claims',
  'claimed',
  'published',
  'duplicates',
  'failed',
  'retried',
  'dead',
  'leaseLost',
  'storeErrors',
  'staleReset',
  'cleanedUp',
  'received',
  'processed',
  'handlerErrors',
  'terminated',
  'redelivered',
])

const snake = (name: string): string => name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)

/** The numeric leaves of a snapshot, nested objects flattened with `_` (claimLatencyMs.max -> claim_latency_ms_max). */
const numericFields = (snapshot: object, prefix = ''): Map<string, number> => {
  const fields = new Map<string, number>()
  for (const [key, value] of Object.entries(snapshot)) {
    const name = prefix === '' ? key : `${prefix}_${snake(key)}`
    if (typeof value === 'number') fields.set(prefix === '' ? key : name, value)
    else if (value !== null && typeof value === 'object') {
      for (const [inner, number] of numericFields(value, snake(key))) fields.set(inner, number)
    }
  }
  return fields
}

/**
 * Prometheus exposition of relay and processor metrics through `prom-client`, an optional
 * peer dependency loaded only when this is called. One scrape reads each snapshot once
 * (one cheap store read for the pending age).
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
    // The field list comes from a first snapshot; the values are read again on every scrape.
    const first = numericFields(await source.metrics())
    let pending: Promise<Map<string, number>> | undefined
    // Every metric's collect() of one scrape shares one snapshot.
    const read = (): Promise<Map<string, number>> => {
      pending ??= source.metrics().then((snapshot) => {
        queueMicrotask(() => {
          pending = undefined
        })
        return numericFields(snapshot)
      })
      return pending
    }
    for (const field of first.keys()) {
      const base = `txbox_${component}_${snake(field)}`
      const help = `txbox ${component} ${field}`
      const labels = { worker_id: source.workerId }
      if (COUNTERS.has(field)) {
        new client.Counter({
          name: `${base}_total`,
          help,
          labelNames: ['worker_id'],
          registers: [registry],
          async collect() {
            const value = (await read()).get(field) ?? 0
            this.reset()
            this.inc(labels, value)
          },
        })
      } else {
        new client.Gauge({
          name: base,
          help,
          labelNames: ['worker_id'],
          registers: [registry],
          async collect() {
            const value = (await read()).get(field)
            if (value !== undefined) this.set(labels, value)
          },
        })
      }
    }
  }
  return { registry, contentType: registry.contentType, metrics: () => registry.metrics() }
}
