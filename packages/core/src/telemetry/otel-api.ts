import { openTelemetryMode } from './mode.js'

/**
 * The one place core reaches `@opentelemetry/api`, an optional peer dependency: it is
 * imported once, on first use, and everything else asks this module whether it is there.
 * Without it nothing is recorded and no other code path changes. Its types appear in no
 * public declaration, so an app without the package type-checks.
 */
export type OtelApi = typeof import('@opentelemetry/api')

/** Undefined until the import settled; then the API, or null when it is not installed. */
let loaded: { api: OtelApi | null } | undefined
let loading: Promise<OtelApi | null> | undefined

/** The API if it is loaded and on, null if it is off or not installed, undefined if not imported yet. */
export const otelApiNow = (): OtelApi | null | undefined =>
  openTelemetryMode() === 'off' ? null : loaded?.api

/** Imports the API once (later calls share the answer); null when it is off or not installed. */
export const loadOtelApi = async (): Promise<OtelApi | null> => {
  if (openTelemetryMode() === 'off') return null
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
