import { loadOtelApi } from './otel-api.js'

/**
 * Resolves once txbox has looked for `@opentelemetry/api`: true when it is installed (and
 * telemetry is not off). Relays and processors record spans from then on; a service that
 * registers the SDK at start awaits this before starting them, so the first claim is traced.
 */
export const openTelemetryReady = async (): Promise<boolean> => (await loadOtelApi()) !== null
