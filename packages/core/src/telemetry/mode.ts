/** `auto`: use `@opentelemetry/api` when it is installed (the default); `off`: never. */
export type OpenTelemetryMode = 'auto' | 'off'

let mode: OpenTelemetryMode = 'auto'

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

/** The mode set by {@link setOpenTelemetryMode}. */
export const openTelemetryMode = (): OpenTelemetryMode => mode
