import type { Context, Meter, Tracer } from '@opentelemetry/api'
import { headerEntries } from '../nats-message.js'
import { SCOPE } from './attributes.js'
import { openTelemetryMode } from './mode.js'
import { type OtelApi, otelApiNow } from './otel-api.js'
import { observeSnapshot, type SnapshotInstruments, type SnapshotSource } from './snapshot-instruments.js'

/** What a relay or processor records through, once `@opentelemetry/api` is loaded. */
export interface Instrumentation {
  readonly api: OtelApi
  readonly tracer: Tracer
  readonly meter: Meter
}

/**
 * The API, a tracer and a meter of the global providers (registered by the SDK), and the
 * source's snapshot as observable instruments; null when the API is not installed or
 * telemetry is off. Register the SDK before starting the relay or processor: the meter
 * taken here stays the one of the provider registered at that moment.
 */
export class InstrumentationSlot {
  readonly #component: 'relay' | 'inbox'
  readonly #source: SnapshotSource
  #current: Instrumentation | null | undefined
  #opening: Promise<void> | undefined
  #instruments: SnapshotInstruments | undefined

  constructor(component: 'relay' | 'inbox', source: SnapshotSource) {
    this.#component = component
    this.#source = source
  }

  /** The instrumentation, or null when there is none (before {@link open}, or telemetry turned off since). */
  get current(): Instrumentation | null {
    return openTelemetryMode() === 'off' ? null : (this.#current ?? null)
  }

  /**
   * Takes the API and registers the instruments, once; never throws (telemetry is best
   * effort). Spans are recorded from this call on; the returned promise settles once the
   * observable instruments are registered (they read a first snapshot).
   */
  open(): Promise<void> {
    this.#opening ??= this.#use(otelApiNow())
    return this.#opening
  }

  async #use(api: OtelApi | null): Promise<void> {
    if (api === null) {
      this.#current = null
      return
    }
    const meter = api.metrics.getMeter(SCOPE)
    this.#current = { api, tracer: api.trace.getTracer(SCOPE), meter }
    try {
      this.#instruments = await observeSnapshot(meter, this.#component, this.#source)
    } catch {
      // A snapshot that cannot be taken leaves the counters unobserved; spans still work.
    }
  }

  /** Unregisters the observable instruments (on stop), so a stopped relay is not read again. */
  close(): void {
    this.#instruments?.remove()
    this.#instruments = undefined
  }
}

/** The trace context a message or event carries in its headers (the registered propagator reads it). */
export const contextFromHeaders = (
  api: OtelApi,
  headers: Readonly<Record<string, string>> | string | undefined,
): Context => {
  const carrier =
    typeof headers === 'string' ? Object.fromEntries(headerEntries(headers) ?? []) : (headers ?? {})
  return api.propagation.extract(api.ROOT_CONTEXT, carrier)
}

/** Seconds, as OpenTelemetry duration histograms take them. */
export const seconds = (ms: number): number => Math.max(0, ms) / 1_000
