import type { BatchObservableCallback, Meter, Observable } from '@opentelemetry/api'
import { COUNTERS, type Field, fieldsOf, LABELLED, snake } from '../relay/metric-fields.js'

/** A relay or processor, as its OpenTelemetry instruments read it. */
export interface SnapshotSource {
  readonly workerId: string
  metrics(): Promise<object>
}

/** Observable instruments over a source's snapshot; `remove` unregisters them from the meter. */
export interface SnapshotInstruments {
  remove(): void
}

/**
 * The snapshot fields the Prometheus exporter exposes, as OpenTelemetry observable counters
 * (fields that only grow) and gauges, named `txbox.<component>.<field>` with the same
 * `worker_id` and `status`/`reason`/`entry` attributes. One collection reads the snapshot
 * once (the relay's: two store reads), as one Prometheus scrape does. Histogram fields are
 * left out: OpenTelemetry histograms only take single observations, which the relay and
 * processor record as they happen.
 */
export const observeSnapshot = async (
  meter: Meter,
  component: 'relay' | 'inbox',
  source: SnapshotSource,
): Promise<SnapshotInstruments> => {
  // The field list comes from a first snapshot, as the Prometheus exporter's does.
  const first = fieldsOf(await source.metrics())
  const instruments = new Map<string, Observable>()
  for (const [field, shape] of first) {
    if (shape.kind === 'histogram') continue
    const name = `txbox.${component}.${snake(field)}`
    const options = { description: `txbox ${component} ${field}` }
    instruments.set(
      field,
      COUNTERS.has(field)
        ? meter.createObservableCounter(name, options)
        : meter.createObservableGauge(name, options),
    )
  }
  const base = { worker_id: source.workerId }
  const callback: BatchObservableCallback = async (result) => {
    let fields: Map<string, Field>
    try {
      fields = fieldsOf(await source.metrics())
    } catch {
      // A snapshot that cannot be read reports nothing this time, as a null field does.
      return
    }
    for (const [field, instrument] of instruments) {
      const current = fields.get(field)
      if (current === undefined || current.value === null) continue
      if (current.kind === 'number') result.observe(instrument, current.value, base)
      else if (current.kind === 'labelled') {
        const label = LABELLED[field] ?? 'key'
        for (const [key, value] of Object.entries(current.value))
          result.observe(instrument, value, { ...base, [label]: key })
      }
    }
  }
  const observables = [...instruments.values()]
  meter.addBatchObservableCallback(callback, observables)
  return { remove: () => meter.removeBatchObservableCallback(callback, observables) }
}
