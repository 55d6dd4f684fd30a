/**
 * One trace across the outbox, end to end (issue 20): an HTTP-style span enqueues an event
 * in the store's transaction (another enqueue is rolled back), the OutboxRelay publishes to
 * the real NATS JetStream, and an InboxProcessor in another process consumes it. The spans
 * of both processes, each exported by the SDK's in-memory exporter, form one trace: the
 * publish span and the consumer's receive and process spans are children of the request's
 * span (the context stored with the event at enqueue), the handler's own span is nested in
 * process, and the rolled-back event has no publish span.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { context, SpanKind, trace } from '@opentelemetry/api'
import { OutboxRelay, openTelemetryReady, silentLogger } from '@txbox/core'
import { createJetStreamPublisher, ensureDurableConsumer, ensureStream } from '@txbox/core/nats'
import { connect, type JetStreamManager, type NatsConnection } from 'nats'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type OpenedPair, openPostgres, openRedis, openSqlite } from './ledger-stores.js'
import { registerTracing } from './otel-sdk.js'

const natsUrl = process.env.TXBOX_NATS_URL
const postgresUrl = process.env.TXBOX_POSTGRES_URL
const redisUrl = process.env.TXBOX_REDIS_URL
const required = process.env.TXBOX_REQUIRE_ALL === '1'
const child = fileURLToPath(new URL('./fixtures/otel-inbox-child.ts', import.meta.url))
const tsx = fileURLToPath(new URL('../node_modules/.bin/tsx', import.meta.url))

const stores: { name: string; lacking: string[]; open: () => Promise<OpenedPair<never>> }[] = [
  {
    name: 'postgres',
    lacking: postgresUrl ? [] : ['TXBOX_POSTGRES_URL'],
    open: () => openPostgres(postgresUrl as string) as Promise<OpenedPair<never>>,
  },
  { name: 'sqlite', lacking: [], open: () => openSqlite() as Promise<OpenedPair<never>> },
  {
    name: 'redis',
    lacking: redisUrl ? [] : ['TXBOX_REDIS_URL'],
    open: () => openRedis(redisUrl as string) as Promise<OpenedPair<never>>,
  },
]

interface ExportedSpan {
  name: string
  kind: number
  traceId: string
  spanId: string
  parentSpanId: string | undefined
  attributes: Record<string, unknown>
  status: number
}

/** Starts the consuming process; resolves with its spans once it exits. */
const startConsumer = async (stream: string, expected: number) => {
  const process_ = spawn(tsx, [child, natsUrl as string, stream, 'inbox', String(expected)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  process_.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString()
  })
  process_.stderr.on('data', (chunk: Buffer) => {
    err += chunk.toString()
  })
  const exited = new Promise<number | null>((resolve) => process_.on('exit', resolve))
  const deadline = Date.now() + 60_000
  while (!out.includes('ready\n')) {
    if (Date.now() > deadline || process_.exitCode !== null)
      throw new Error(`the consumer process did not start: ${err}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return {
    async spans(): Promise<{ processed: number; spans: ExportedSpan[] }> {
      const code = await exited
      if (code !== 0) throw new Error(`the consumer process exited with ${String(code)}: ${err}`)
      const last = out.trim().split('\n').at(-1) ?? '{}'
      return JSON.parse(last)
    },
  }
}

describe('one OpenTelemetry trace from the request that enqueued to the handler that consumed', () => {
  const exporter = registerTracing()
  let nc: NatsConnection
  let jsm: JetStreamManager

  beforeAll(async () => {
    await openTelemetryReady()
    if (!natsUrl) return
    nc = await connect({ servers: natsUrl })
    jsm = await nc.jetstreamManager()
  })

  afterAll(async () => {
    await nc?.close()
  })

  for (const store of stores) {
    const lacking = natsUrl ? store.lacking : ['TXBOX_NATS_URL', ...store.lacking]
    it.skipIf(lacking.length > 0 && !required)(
      `${store.name}: enqueue -> relay -> NATS -> inbox in another process${lacking.length > 0 ? ` (skipped: ${lacking.join(', ')} not set)` : ''}`,
      async () => {
        const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`
        const stream = `OTEL_${store.name.toUpperCase()}_${suffix.toUpperCase()}`
        const subject = `otel${suffix}.orders`
        await ensureStream(jsm, { name: stream, subjects: [`otel${suffix}.>`] })
        await ensureDurableConsumer(jsm, { stream, durable: 'inbox', ackWaitMs: 10_000 })
        const opened = await store.open()
        try {
          const consumer = await startConsumer(stream, 1)
          const kept = `kept-${suffix}`
          const rolledBack = `rolled-back-${suffix}`
          const request = trace.getTracer('web-app').startSpan('POST /orders', { kind: SpanKind.SERVER })
          await context.with(trace.setSpan(context.active(), request), async () => {
            await opened.pair.enqueue([{ eventId: kept, subject, payload: '{"total":42}' }], false)
            await opened.pair.enqueue([{ eventId: rolledBack, subject, payload: '{"total":0}' }], true)
          })
          request.end()
          const stored = await opened.pair.outbox.get(kept)
          expect(JSON.parse(stored?.headers ?? '{}').traceparent).toContain(request.spanContext().traceId)

          // The relay runs outside the request's context, as in its own process.
          const relay = new OutboxRelay({
            outbox: opened.pair.outbox,
            publisher: createJetStreamPublisher({ connection: nc }),
            workerId: `relay-${suffix}`,
            logger: silentLogger,
          })
          while ((await relay.runOnce()) > 0);
          await relay.stop()

          const traceId = request.spanContext().traceId
          const publishes = exporter.getFinishedSpans().filter((span) => span.name === `publish ${subject}`)
          expect(publishes.map((span) => span.attributes['messaging.message.id'])).toEqual([kept])
          const [publish] = publishes
          expect(publish?.spanContext().traceId).toBe(traceId)
          expect(publish?.parentSpanContext?.spanId).toBe(request.spanContext().spanId)
          expect(publish?.attributes).toMatchObject({
            'messaging.system': 'nats',
            'txbox.nats.stream': stream,
            'txbox.outcome': 'published',
          })

          const consumed = await consumer.spans()
          expect(consumed.processed).toBe(1)
          const named = (name: string) => consumed.spans.filter((span) => span.name === name)
          const [receive] = named(`receive ${subject}`)
          const [process] = named(`process ${subject}`)
          const [handler] = named(`charge ${kept}`)
          for (const span of [receive, process, handler]) expect(span?.traceId).toBe(traceId)
          expect(receive?.parentSpanId).toBe(request.spanContext().spanId)
          expect(process?.parentSpanId).toBe(request.spanContext().spanId)
          expect(process?.kind).toBe(SpanKind.CONSUMER)
          expect(process?.attributes).toMatchObject({
            'messaging.message.id': kept,
            'txbox.nats.stream': stream,
            'txbox.outcome': 'processed',
          })
          expect(handler?.parentSpanId).toBe(process?.spanId)
          expect(consumed.spans.some((span) => span.attributes['messaging.message.id'] === rolledBack)).toBe(
            false,
          )
        } finally {
          exporter.reset()
          await opened.close()
          await jsm.streams.delete(stream).catch(() => {})
        }
      },
    )
  }
})
