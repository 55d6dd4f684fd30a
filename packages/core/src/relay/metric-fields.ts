import { type HistogramSnapshot, isHistogramSnapshot } from './histogram.js'

// How a relay or processor metrics snapshot becomes metrics, shared by the Prometheus
// exporter and the OpenTelemetry instruments so both expose the same fields the same way.

/** Snapshot fields that only grow: exported as counters (`_total`). */
export const COUNTERS = new Set([
  'claims',
  'claimed',
  'published',
  'duplicates',
  'duplicateConflicts',
  'duplicatesUnverified',
  'failed',
  'retried',
  'dead',
  'leaseLost',
  'storeErrors',
  'staleReset',
  'cleanedUp',
  'publishFailures',
  'deadLettered',
  'publishedByMapEntry',
  'received',
  'processed',
  'handlerErrors',
  'terminated',
  'redelivered',
])

/**
 * Snapshot fields that map a label value to a number (`{ pending: 3, sent: 10 }`): one
 * series per key, with this label. Named here, not guessed from the first snapshot, so
 * a map that is null or empty at the first scrape is still registered.
 */
export const LABELLED: Readonly<Record<string, string>> = {
  outboxEvents: 'status',
  publishFailures: 'reason',
  deadLettered: 'reason',
  publishedByMapEntry: 'entry',
}

export const snake = (name: string): string => name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)

export type Field =
  | { kind: 'number'; value: number | null }
  | { kind: 'labelled'; value: Record<string, number> | null }
  | { kind: 'histogram'; value: HistogramSnapshot }

/**
 * The exported fields of a snapshot: numbers (null = unknown now, e.g. the store could not
 * be read), labelled maps, histograms; other nested objects flattened with `_`
 * (claimLatencyMs.max -> claim_latency_ms_max).
 */
export const fieldsOf = (snapshot: object, prefix = ''): Map<string, Field> => {
  const fields = new Map<string, Field>()
  for (const [key, value] of Object.entries(snapshot)) {
    const name = prefix === '' ? key : `${prefix}_${snake(key)}`
    if (prefix === '' && key in LABELLED) {
      fields.set(name, { kind: 'labelled', value: value === null ? null : (value as Record<string, number>) })
    } else if (typeof value === 'number' || value === null) {
      fields.set(name, { kind: 'number', value })
    } else if (isHistogramSnapshot(value)) {
      fields.set(name, { kind: 'histogram', value })
    } else if (typeof value === 'object') {
      for (const [inner, field] of fieldsOf(value, snake(key))) fields.set(inner, field)
    }
  }
  return fields
}
