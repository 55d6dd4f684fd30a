import { silentLogger } from '@txbox/core'
import { describe, expect, it } from 'vitest'
import { runRelayCli } from '../src/cli.js'
import type { Importer } from '../src/stores.js'
import { openTelemetryRequested, startOpenTelemetry } from '../src/telemetry.js'

/** A fake `@opentelemetry/sdk-node` that records what the relay does with it. */
const fakeSdk = () => {
  const calls: string[] = []
  const configs: unknown[] = []
  class NodeSDK {
    constructor(config: unknown) {
      configs.push(config)
    }
    start() {
      calls.push('start')
    }
    async shutdown() {
      calls.push('shutdown')
    }
  }
  const imported: string[] = []
  const importer: Importer = async (specifier) => {
    imported.push(specifier)
    return specifier === '@opentelemetry/sdk-node' ? { NodeSDK } : import(specifier)
  }
  return { calls, configs, imported, importer }
}

const logger = { ...silentLogger, debug() {}, info() {}, warn() {}, error() {} }

describe('txbox-relay OpenTelemetry from the OTEL_* variables', () => {
  it('is asked for by an exporter or OTLP endpoint variable, unless OTEL_SDK_DISABLED=true', () => {
    expect(openTelemetryRequested({})).toBe(false)
    expect(openTelemetryRequested({ OTEL_SERVICE_NAME: 'relay' })).toBe(false)
    expect(openTelemetryRequested({ OTEL_TRACES_EXPORTER: 'otlp' })).toBe(true)
    expect(openTelemetryRequested({ OTEL_METRICS_EXPORTER: 'prometheus' })).toBe(true)
    expect(openTelemetryRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(true)
    expect(openTelemetryRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: ' ' })).toBe(false)
    expect(
      openTelemetryRequested({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_SDK_DISABLED: 'TRUE',
      }),
    ).toBe(false)
  })

  it('loads nothing when not asked', async () => {
    const sdk = fakeSdk()
    expect(await startOpenTelemetry({}, sdk.importer, logger)).toBeUndefined()
    expect(sdk.imported).toEqual([])
  })

  it('starts the Node SDK (service name txbox-relay unless OTEL_SERVICE_NAME) and shuts it down', async () => {
    const sdk = fakeSdk()
    const started = await startOpenTelemetry({ OTEL_TRACES_EXPORTER: 'console' }, sdk.importer, logger)
    expect(sdk.configs).toEqual([{ serviceName: 'txbox-relay' }])
    expect(sdk.calls).toEqual(['start'])
    await started?.shutdown()
    expect(sdk.calls).toEqual(['start', 'shutdown'])
    const named = fakeSdk()
    await startOpenTelemetry(
      { OTEL_TRACES_EXPORTER: 'console', OTEL_SERVICE_NAME: 'orders-relay' },
      named.importer,
      logger,
    )
    // The SDK reads OTEL_SERVICE_NAME itself.
    expect(named.configs).toEqual([{}])
  })

  it('exits 2 naming the npm command when asked without the SDK installed', async () => {
    const stderr: string[] = []
    const missing: Importer = async (specifier) => {
      if (specifier === '@opentelemetry/sdk-node')
        throw Object.assign(new Error(`Cannot find package '${specifier}' imported from /app/x.js`), {
          code: 'ERR_MODULE_NOT_FOUND',
        })
      return import(specifier)
    }
    const code = await runRelayCli(['--store', 'sqlite', '--url', '/nonexistent/dir/relay.db'], {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' },
      stderr: { write: (text: string) => stderr.push(text) },
      importer: missing,
    })
    expect(code).toBe(2)
    expect(stderr.join('')).toContain(
      '[txbox] [relay] OpenTelemetry (OTEL_EXPORTER_OTLP_ENDPOINT set; OTEL_SDK_DISABLED=true turns it off) needs @opentelemetry/api and @opentelemetry/sdk-node, and "@opentelemetry/sdk-node" is not installed: npm i @opentelemetry/api @opentelemetry/sdk-node',
    )
  })
})
