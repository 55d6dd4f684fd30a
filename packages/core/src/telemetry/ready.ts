import { otelApiNow } from './otel-api.js'

/**
 * Resolves true when `@opentelemetry/api` is installed (and telemetry is not off), false
 * otherwise. txbox loads it on first use without waiting, so there is nothing to wait for;
 * a service can call this at start to log whether telemetry is possible.
 */
export const openTelemetryReady = async (): Promise<boolean> => otelApiNow() !== null
