/**
 * The one place core reaches `@opentelemetry/api`, an optional peer dependency: it is
 * imported once, on first use, and everything else asks this module whether it is there.
 * Without it nothing is recorded and no other code path changes.
 */
export type OtelApi = typeof import('@opentelemetry/api')

/** `auto`: use `@opentelemetry/api` when it is installed (the default); `off`: never. */
export type OpenTelemetryMode = 'auto' | 'off'

let mode: OpenTelemetryMode = 'auto'
/** Undefined until the import settled; then the API, or null when it is not installed. */
let loaded: { api: OtelApi | null } | undefined
let loading: Promise<OtelApi | null> | undefined

/**
 * Turns txbox's OpenTelemetry instrumentation on (`auto`, the default: active when
 * `@opentelemetry/api` is installed and an SDK is registered) or `off` for the whole process
 * (no trace context stored at enqueue, no spans, no metrics), e.g. to measure its cost.
 */
export const setOpenTelemetryMode = (value: OpenTelemetryMode): void => {
  if (value !== 'auto' && value !== 'off')
    throw new TypeError(`[txbox] [telemetry] mode must be 'auto' or 'off'; got ${String(value)}`)
  mode = value
}

/** The API if it is loaded and on, null if it is off or not installed, undefined if not imported yet. */
export const otelApiNow = (): OtelApi | null | undefined => (mode === 'off' ? null : loaded?.api)

/** Imports the API once (later calls share the answer); null when it is off or not installed. */
export const loadOtelApi = async (): Promise<OtelApi | null> => {
  if (mode === 'off') return null
  if (loaded !== undefined) return loaded.api
  loading ??= import('@opentelemetry/api').then(
    (api) => api,
    // Not installed (or a runtime that cannot import it): instrumentation stays off.
    () => null,
  )
  const api = await loading
  loaded = { api }
  // The mode may have been turned off while the import ran.
  return otelApiNow() ?? null
}

/**
 * Resolves once txbox has looked for `@opentelemetry/api`: true when it is installed (and
 * telemetry is not off). Relays and processors record spans from then on; a service that
 * registers the SDK at start awaits this before starting them, so the first claim is traced.
 */
export const openTelemetryReady = async (): Promise<boolean> => (await loadOtelApi()) !== null
