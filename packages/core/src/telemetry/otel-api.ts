import { createRequire } from 'node:module'
import { openTelemetryMode } from './mode.js'

/**
 * The one place core reaches `@opentelemetry/api`, an optional peer dependency: it is
 * loaded once, on first use, and everything else asks this module whether it is there.
 * Without it nothing is recorded and no other code path changes. Its types appear in no
 * public declaration, so an app without the package type-checks.
 */
export type OtelApi = typeof import('@opentelemetry/api')

/** Undefined until the first look; then the API, or null when it is not installed. */
let loaded: { api: OtelApi | null } | undefined

/**
 * Loaded synchronously (`require`, from both builds): an enqueue must not wait for an
 * import, or a call issued after it on the same store (a claim) could reach the database
 * first. The app's own `import` of the API may be another copy of the module; the API keeps
 * its registered providers, context manager and context keys on a global shared by every
 * copy of the same major version, so both see one SDK.
 */
const load = (): OtelApi | null => {
  try {
    return createRequire(import.meta.url)('@opentelemetry/api') as OtelApi
  } catch {
    // Not installed (or a runtime that cannot load it): instrumentation stays off.
    return null
  }
}

/** The API, or null when telemetry is off or the package is not installed. */
export const otelApiNow = (): OtelApi | null => {
  if (openTelemetryMode() === 'off') return null
  loaded ??= { api: load() }
  return loaded.api
}
