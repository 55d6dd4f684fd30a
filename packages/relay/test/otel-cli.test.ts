/**
 * txbox-relay with the real OpenTelemetry Node SDK, started from the OTEL_* variables (the
 * built bin, as a deployment runs it): an event stored with a request's trace context is
 * published, and the console exporter prints its `publish` span in that trace, child of the
 * request's span; SIGTERM flushes it and exits 0.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'nats'
import { afterAll, describe, expect, it } from 'vitest'
import { openStore } from '../src/index.js'
import { ROOT, waitUntil } from './harness.js'

const natsUrl = process.env.TXBOX_NATS_URL
const required = process.env.TXBOX_REQUIRE_ALL === '1'
const dir = mkdtempSync(join(tmpdir(), 'txbox-relay-otel-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe.skipIf(!natsUrl && !required)(
  'txbox-relay with OTEL_* variables and @opentelemetry/sdk-node',
  () => {
    it('exports the publish span in the trace stored at enqueue', async () => {
      if (!natsUrl) throw new Error('TXBOX_REQUIRE_ALL=1 but TXBOX_NATS_URL is not set')
      const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`
      const stream = `OTELCLI_${suffix.toUpperCase()}`
      const subject = `otelcli${suffix}.orders`
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
      const requestSpanId = '00f067aa0ba902b7'
      const url = join(dir, 'outbox.db')
      const store = await openStore({ kind: 'sqlite', url, migrate: true })
      const lines: string[] = []
      const relay = spawn(
        process.execPath,
        [
          'packages/relay/bin/txbox-relay.js',
          ...['--store', 'sqlite', '--url', url, '--nats', natsUrl],
          ...['--stream', stream, '--stream-subjects', `otelcli${suffix}.>`, '--poll-interval-ms', '100'],
        ],
        {
          cwd: ROOT,
          stdio: ['ignore', 'pipe', 'pipe'],
          env: {
            PATH: process.env.PATH,
            OTEL_TRACES_EXPORTER: 'console',
            OTEL_METRICS_EXPORTER: 'none',
            OTEL_LOGS_EXPORTER: 'none',
            OTEL_SERVICE_NAME: 'relay-otel-test',
          },
        },
      )
      const out: string[] = []
      relay.stdout?.on('data', (chunk: Buffer) => out.push(chunk.toString()))
      relay.stderr?.on('data', (chunk: Buffer) => lines.push(chunk.toString()))
      const exited = new Promise<number | null>((resolve) => relay.once('exit', (code) => resolve(code)))
      const log = () => `${lines.join('')}\n${out.join('')}`
      try {
        // What findOrCreate stores inside the request's span (core's tests prove that part).
        await store.outbox.findOrCreate({
          eventId: `otel-${suffix}`,
          subject,
          payload: '{"total":42}',
          headers: JSON.stringify({ traceparent: `00-${traceId}-${requestSpanId}-01` }),
        })
        const sent = await waitUntil(
          async () => (await store.outbox.getCountByStatus()).sent === 1,
          30_000,
          100,
        )
        expect(sent, log()).toBe(true)
        relay.kill('SIGTERM')
        expect(await exited, log()).toBe(0)
        expect(lines.join('')).toContain('"msg":"OpenTelemetry started"')
        const printed = out.join('')
        // The console exporter prints each span as an object literal (util.inspect).
        const span = printed.split(/\n(?=\{)/).find((block) => block.includes(`name: 'publish ${subject}'`))
        expect(span, log()).toBeDefined()
        expect(span).toContain(`traceId: '${traceId}'`)
        expect(span).toContain(`spanId: '${requestSpanId}'`)
        expect(span).toContain(`'messaging.message.id': 'otel-${suffix}'`)
        expect(span).toContain("'txbox.outcome': 'published'")
      } finally {
        if (relay.exitCode === null) relay.kill('SIGKILL')
        await store.close()
        const nc = await connect({ servers: natsUrl })
        await (await nc.jetstreamManager()).streams.delete(stream).catch(() => {})
        await nc.close()
      }
    })
  },
)
