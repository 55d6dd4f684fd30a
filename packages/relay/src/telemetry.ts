import { messageOf, openTelemetryReady, type TxboxLogger } from '@txbox/core'
import { type Importer, importFor } from './stores.js'

/**
 * The standard variables that say "export telemetry" (the OpenTelemetry SDK reads them all,
 * and the others it knows: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_PROPAGATORS...).
 */
export const OTEL_TRIGGERS = [
  'OTEL_TRACES_EXPORTER',
  'OTEL_METRICS_EXPORTER',
  'OTEL_EXPORTER_OTLP_ENDPOINT',
  'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
  'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT',
] as const

/** The packages the relay needs for it, named in the error when one is missing. */
export const OTEL_PACKAGES = ['@opentelemetry/api', '@opentelemetry/sdk-node'] as const

/** The part of `@opentelemetry/sdk-node` the relay uses. */
interface NodeSdkModule {
  NodeSDK: new (config: { serviceName?: string }) => { start(): void; shutdown(): Promise<void> }
}

/** A started SDK: flushes and stops it. */
export interface StartedOpenTelemetry {
  shutdown(): Promise<void>
}

/** Whether the environment asks for OpenTelemetry (one trigger set, and the SDK not disabled). */
export const openTelemetryRequested = (env: NodeJS.ProcessEnv): boolean =>
  env.OTEL_SDK_DISABLED?.trim().toLowerCase() !== 'true' &&
  OTEL_TRIGGERS.some((name) => (env[name] ?? '').trim() !== '')

/** How long a stop waits for the last spans and metrics to be exported. */
const SHUTDOWN_MS = 5_000

/**
 * Starts the OpenTelemetry Node SDK when the environment asks for it: it configures its
 * exporters, resource and propagators from the OTEL_* variables itself (service name
 * `txbox-relay` unless OTEL_SERVICE_NAME says otherwise), before the relay is built, so its
 * instruments use the SDK's meter provider. Undefined when not asked; a ConfigurationError
 * naming the npm command when asked but the SDK is not installed (set OTEL_SDK_DISABLED=true
 * to run without it).
 */
export const startOpenTelemetry = async (
  env: NodeJS.ProcessEnv,
  importer: Importer,
  logger: Required<TxboxLogger>,
): Promise<StartedOpenTelemetry | undefined> => {
  if (!openTelemetryRequested(env)) return undefined
  const set = OTEL_TRIGGERS.filter((name) => (env[name] ?? '').trim() !== '')
  const why = `OpenTelemetry (${set.join(', ')} set; OTEL_SDK_DISABLED=true turns it off)`
  await importFor(importer, '@opentelemetry/api', why, OTEL_PACKAGES)
  const { NodeSDK } = await importFor<NodeSdkModule>(importer, '@opentelemetry/sdk-node', why, OTEL_PACKAGES)
  const sdk = new NodeSDK(env.OTEL_SERVICE_NAME ? {} : { serviceName: 'txbox-relay' })
  sdk.start()
  const found = await openTelemetryReady()
  logger.info('OpenTelemetry started', {
    variables: set,
    serviceName: env.OTEL_SERVICE_NAME || 'txbox-relay',
    ...(found ? {} : { warning: 'txbox could not load @opentelemetry/api: nothing is recorded' }),
  })
  return {
    async shutdown() {
      try {
        await Promise.race([
          sdk.shutdown(),
          new Promise((resolve) => setTimeout(resolve, SHUTDOWN_MS).unref()),
        ])
      } catch (error) {
        logger.warn('OpenTelemetry shutdown failed; the last spans may be lost', { error: messageOf(error) })
      }
    },
  }
}
