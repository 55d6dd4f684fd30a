import { context, propagation, SpanStatusCode, trace } from '@opentelemetry/api'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  createMemoryStore,
  InboxProcessor,
  ManualClock,
  natsMessageBytes,
  OutboxRelay,
  type OutboxRelayOptions,
  setOpenTelemetryMode,
  silentLogger,
} from '../src/index.js'
import { addHeaderEntries } from '../src/telemetry/enqueue-context.js'
import { FakePublisher, message } from './helpers.js'
import { pointsOf, registerSdk, spansNamed } from './telemetry-setup.js'

const sdk = registerSdk()
const tracer = trace.getTracer('test')

afterEach(() => {
  sdk.spans.reset()
  setOpenTelemetryMode('auto')
})

/** Runs `fn` inside a new active span, as an HTTP instrumentation would; answers the span's ids. */
const inSpan = async <T>(fn: () => Promise<T>) => {
  const span = tracer.startSpan('POST /orders')
  const result = await context.with(trace.setSpan(context.active(), span), fn)
  span.end()
  return { result, traceId: span.spanContext().traceId, spanId: span.spanContext().spanId }
}

const relayOf = (options: Partial<OutboxRelayOptions> = {}) => {
  const clock = new ManualClock()
  const store = createMemoryStore({ clock: clock.now })
  const publisher = new FakePublisher()
  const relay = new OutboxRelay({
    outbox: store.outbox,
    publisher,
    workerId: 'relay-otel',
    clock: clock.now,
    random: () => 0,
    backoff: { baseMs: 100, maxMs: 1_000, jitter: 0 },
    claimRampUp: false,
    logger: silentLogger,
    ...options,
  })
  return { clock, store, publisher, relay }
}

describe('addHeaderEntries', () => {
  const carrier = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }

  it('appends to the caller text byte for byte and keeps what the caller set', () => {
    const caller = '{ "x-tenant" : "acme",\n "traceparent": "mine" }  '
    expect(addHeaderEntries(caller, carrier)).toBeUndefined()
    const other = '{ "x-tenant" : "acme" }'
    const added = addHeaderEntries(other, carrier) as string
    expect(added.startsWith('{ "x-tenant" : "acme" ')).toBe(true)
    expect(JSON.parse(added)).toEqual({ 'x-tenant': 'acme', ...carrier })
    expect(addHeaderEntries('{}', carrier)).toBe(`{"traceparent":"${carrier.traceparent}"}`)
    expect(addHeaderEntries(undefined, carrier)).toBe(`{"traceparent":"${carrier.traceparent}"}`)
  })

  it('compares names case-insensitively, as HTTP and NATS readers do', () => {
    expect(addHeaderEntries('{"TraceParent":"mine"}', carrier)).toBeUndefined()
  })

  it('leaves headers alone that travel whole (not a flat JSON object of strings)', () => {
    expect(addHeaderEntries('plain text', carrier)).toBeUndefined()
    expect(addHeaderEntries('{"n":1}', carrier)).toBeUndefined()
    expect(addHeaderEntries('["a"]', carrier)).toBeUndefined()
  })

  it('adds nothing NATS could not carry unaltered', () => {
    expect(addHeaderEntries(undefined, { baggage: 'a=1\r\nb=2' })).toBeUndefined()
  })
})

describe('trace context at enqueue', () => {
  it("stores the active span's traceparent (and baggage) with the event, in findOrCreate and findOrCreateMany", async () => {
    const { store } = relayOf()
    const bag = propagation.createBaggage({ tenant: { value: 'acme' } })
    const { traceId, spanId } = await inSpan(() =>
      context.with(propagation.setBaggage(context.active(), bag), async () => {
        await store.outbox.findOrCreate({ eventId: 'one', subject: 's', payload: 'p' })
        await store.outbox.findOrCreateMany([
          { eventId: 'many', subject: 's', payload: 'p', headers: '{"x-tenant":"acme"}' },
        ])
      }),
    )
    const one = await store.outbox.get('one')
    expect(JSON.parse(one?.headers ?? '{}')).toEqual({
      traceparent: `00-${traceId}-${spanId}-01`,
      baggage: 'tenant=acme',
    })
    const many = await store.outbox.get('many')
    expect(many?.headers?.startsWith('{"x-tenant":"acme",')).toBe(true)
    expect(JSON.parse(many?.headers ?? '{}').traceparent).toBe(`00-${traceId}-${spanId}-01`)
  })

  it('stores nothing extra without an active span, or with telemetry off', async () => {
    const { store } = relayOf()
    await store.outbox.findOrCreate({ eventId: 'no-span', subject: 's', payload: 'p' })
    setOpenTelemetryMode('off')
    await inSpan(() =>
      store.outbox.findOrCreate({ eventId: 'off', subject: 's', payload: 'p', headers: '{}' }),
    )
    expect((await store.outbox.get('no-span'))?.headers).toBeUndefined()
    expect((await store.outbox.get('off'))?.headers).toBe('{}')
  })

  it('never makes an event that fits unstorable: over maxEventBytes with the context, it is stored as given', async () => {
    const clock = new ManualClock()
    const probe = { eventId: 'big', subject: 's', payload: 'x'.repeat(1_000) }
    const store = createMemoryStore({ clock: clock.now, maxEventBytes: natsMessageBytes(probe) + 10 })
    const fits = { eventId: 'small', subject: 's', payload: 'x'.repeat(900) }
    await inSpan(async () => {
      await store.outbox.findOrCreate(probe)
      await store.outbox.findOrCreate(fits)
    })
    expect((await store.outbox.get('big'))?.headers).toBeUndefined()
    const stored = await store.outbox.get('small')
    expect(stored?.headers).toContain('traceparent')
    expect(natsMessageBytes({ ...fits, headers: stored?.headers })).toBeLessThanOrEqual(
      store.outbox.maxEventBytes,
    )
  })

  it('leaves no trace of a rolled-back enqueue: no event, no publish span', async () => {
    const { store, relay } = relayOf()
    await inSpan(async () => {
      await expect(
        store.transaction(async () => {
          await store.outbox.findOrCreate({ eventId: 'rolled-back', subject: 's', payload: 'p' })
          throw new Error('business rule failed')
        }),
      ).rejects.toThrow('business rule failed')
    })
    expect(await relay.runOnce()).toBe(0)
    expect(sdk.spans.getFinishedSpans().filter((span) => span.name.startsWith('publish'))).toEqual([])
  })
})

describe('OutboxRelay spans', () => {
  it('publishes each event in a PRODUCER span that is a child of the enqueuing span, with the messaging attributes', async () => {
    const { store, relay, publisher } = relayOf()
    publisher.outcome = () => ({ duplicate: false, stream: 'ORDERS', seq: 7 })
    const { traceId, spanId } = await inSpan(() =>
      store.outbox.findOrCreate({ eventId: 'e-1', subject: 'orders.created', payload: 'hello' }),
    )
    expect(await relay.runOnce()).toBe(1)
    const [publish] = spansNamed(sdk, 'publish orders.created')
    expect(publish?.spanContext().traceId).toBe(traceId)
    expect(publish?.parentSpanContext?.spanId).toBe(spanId)
    expect(publish?.kind).toBe(3) // PRODUCER
    expect(publish?.attributes).toMatchObject({
      'messaging.system': 'nats',
      'messaging.operation.type': 'send',
      'messaging.destination.name': 'orders.created',
      'messaging.message.id': 'e-1',
      'messaging.message.body.size': 5,
      'txbox.nats.stream': 'ORDERS',
      'txbox.retry_count': 0,
      'txbox.outcome': 'published',
    })
    const [claim] = spansNamed(sdk, 'claim outbox')
    expect(claim?.attributes['messaging.batch.message_count']).toBe(1)
    const [mark] = spansNamed(sdk, 'mark sent outbox')
    expect(mark?.attributes).toMatchObject({ 'messaging.batch.message_count': 1, 'txbox.not_applied': 0 })
  })

  it('names the span after the mapped subject the event is published to', async () => {
    const { store, relay } = relayOf({ subjectMap: { 'orders.created': 'eu.orders.created' } })
    await store.outbox.findOrCreate({ eventId: 'e-1', subject: 'orders.created', payload: 'p' })
    await relay.runOnce()
    const [publish] = spansNamed(sdk, 'publish eu.orders.created')
    expect(publish?.attributes['messaging.destination.name']).toBe('eu.orders.created')
  })

  it('shows every attempt of a retried publish, and ends a dead-lettered event with an error status', async () => {
    const { clock, store, relay, publisher } = relayOf({ maxAttempts: 2 })
    publisher.outcome = () => Object.assign(new Error('no stream'), { reason: 'no-stream' })
    const { traceId } = await inSpan(() =>
      store.outbox.findOrCreate({ eventId: 'e-1', subject: 'orders.created', payload: 'p' }),
    )
    await relay.runOnce()
    clock.advance(1_000)
    await relay.runOnce()
    const attempts = spansNamed(sdk, 'publish orders.created')
    expect(attempts.map((span) => span.spanContext().traceId)).toEqual([traceId, traceId])
    expect(attempts.map((span) => span.attributes['txbox.retry_count'])).toEqual([0, 1])
    expect(attempts.map((span) => span.attributes['txbox.outcome'])).toEqual(['retry', 'dead-letter'])
    expect(attempts.map((span) => span.status.code)).toEqual([SpanStatusCode.ERROR, SpanStatusCode.ERROR])
    expect(attempts[0]?.attributes['error.type']).toBe('no-stream')
    expect(attempts[1]?.attributes['txbox.dead_letter.reason']).toBe('max-attempts')
    expect(attempts[1]?.events.map((event) => event.name)).toContain('dead-lettered')
    expect((await store.outbox.get('e-1'))?.status).toBe('failed')
  })

  it('ends a too-large event (dead-lettered without a publish) with an error status', async () => {
    const { store, relay, publisher } = relayOf({ maxEventBytes: 200 })
    await store.outbox.findOrCreate({ eventId: 'huge', subject: 'orders.created', payload: 'x'.repeat(500) })
    await relay.runOnce()
    expect(publisher.published).toEqual([])
    const [span] = spansNamed(sdk, 'publish orders.created')
    expect(span?.status.code).toBe(SpanStatusCode.ERROR)
    expect(span?.attributes['txbox.dead_letter.reason']).toBe('too-large')
  })

  it('records nothing with telemetry off, also when turned off after the relay started', async () => {
    setOpenTelemetryMode('off')
    const { store, relay } = relayOf()
    await store.outbox.findOrCreate({ eventId: 'e-1', subject: 'orders.created', payload: 'p' })
    await relay.runOnce()
    expect(sdk.spans.getFinishedSpans()).toEqual([])
    setOpenTelemetryMode('auto')
    const started = relayOf()
    await started.store.outbox.findOrCreate({ eventId: 'e-2', subject: 'orders.created', payload: 'p' })
    await started.relay.runOnce()
    expect(spansNamed(sdk, 'publish orders.created')).toHaveLength(1)
    setOpenTelemetryMode('off')
    await started.store.outbox.findOrCreate({ eventId: 'e-3', subject: 'orders.created', payload: 'p' })
    await started.relay.runOnce()
    expect(spansNamed(sdk, 'publish orders.created')).toHaveLength(1)
  })
})

describe('InboxProcessor spans', () => {
  const traced = async () => {
    const carrier: Record<string, string> = {}
    const { traceId, spanId } = await inSpan(async () => propagation.inject(context.active(), carrier))
    return { carrier, traceId, spanId }
  }

  it("runs the handler inside a process span whose parent is the message's context", async () => {
    const store = createMemoryStore()
    let handlerSpan: string | undefined
    const processor = new InboxProcessor({
      inbox: store.inbox,
      source: { subscribe: async () => ({ [Symbol.asyncIterator]: async function* () {}, stop() {} }) },
      logger: silentLogger,
      handler: async () => {
        const span = tracer.startSpan('charge card')
        handlerSpan = span.spanContext().spanId
        span.end()
      },
    })
    const { carrier, traceId, spanId } = await traced()
    const delivered = message({ eventId: 'e-1', headers: carrier })
    await processor.handle(delivered)
    await processor.handle(message({ eventId: 'e-1', headers: carrier, streamSeq: 2 }))
    expect(delivered.settled).toEqual({ kind: 'ack' })
    const receives = spansNamed(sdk, 'receive orders.created')
    const [process] = spansNamed(sdk, 'process orders.created')
    const [charge] = spansNamed(sdk, 'charge card')
    expect(receives.map((span) => span.attributes['txbox.outcome'])).toEqual(['claimed', 'skipped-duplicate'])
    for (const span of [...receives, process]) {
      expect(span?.spanContext().traceId).toBe(traceId)
      expect(span?.parentSpanContext?.spanId).toBe(spanId)
    }
    expect(process?.attributes).toMatchObject({
      'messaging.system': 'nats',
      'messaging.operation.type': 'process',
      'messaging.destination.name': 'orders.created',
      'messaging.message.id': 'e-1',
      'txbox.nats.stream': 'ORDERS',
      'txbox.outcome': 'processed',
    })
    expect(charge?.spanContext().spanId).toBe(handlerSpan)
    expect(charge?.parentSpanContext?.spanId).toBe(process?.spanContext().spanId)
  })

  it('ends a failing delivery with an error status: redelivered, then terminated as a dead letter', async () => {
    const store = createMemoryStore()
    const processor = new InboxProcessor({
      inbox: store.inbox,
      source: { subscribe: async () => ({ [Symbol.asyncIterator]: async function* () {}, stop() {} }) },
      logger: silentLogger,
      maxDeliveries: 2,
      leaseMs: 1,
      handler: async () => {
        throw new Error('card declined')
      },
    })
    await processor.handle(message({ eventId: 'e-1', deliveryCount: 1 }))
    // The failed first delivery left the event `failed`: the redelivery claims it at once.
    const last = message({ eventId: 'e-1', deliveryCount: 2 })
    await processor.handle(last)
    expect(last.settled?.kind).toBe('term')
    const spans = spansNamed(sdk, 'process orders.created')
    expect(spans.map((span) => span.attributes['txbox.outcome'])).toEqual(['redelivered', 'terminated'])
    expect(spans.map((span) => span.status.code)).toEqual([SpanStatusCode.ERROR, SpanStatusCode.ERROR])
    expect(spans[1]?.attributes['txbox.dead_letter.reason']).toBe('max-deliveries')
  })
})

describe('metrics through OpenTelemetry', () => {
  it("exposes the processor's counters as txbox.inbox.* instruments", async () => {
    const store = createMemoryStore()
    const processor = new InboxProcessor({
      inbox: store.inbox,
      source: { subscribe: async () => ({ [Symbol.asyncIterator]: async function* () {}, stop() {} }) },
      workerId: 'inbox-metrics',
      logger: silentLogger,
      handler: async () => {},
    })
    await processor.handle(message({ eventId: 'e-1' }))
    await processor.handle(message({ eventId: 'e-1', streamSeq: 2 }))
    const collected = await sdk.collectMetrics()
    const value = (name: string) =>
      pointsOf(collected, name).find((point) => point.attributes.worker_id === 'inbox-metrics')?.value
    expect(value('txbox.inbox.received')).toBe(2)
    expect(value('txbox.inbox.processed')).toBe(1)
    expect(value('txbox.inbox.duplicates')).toBe(1)
    await processor.stop()
  })

  it("exposes the relay's counters, backlog per status and latency histograms as OTel instruments", async () => {
    const { store, relay, publisher } = relayOf({ workerId: 'relay-metrics' })
    publisher.outcome = (event) => (event.eventId === 'e-2' ? new Error('boom') : 'ok')
    await store.outbox.findOrCreateMany(
      ['e-1', 'e-2', 'e-3'].map((eventId) => ({ eventId, subject: 'orders.created', payload: 'p' })),
    )
    await relay.runOnce()
    const collected = await sdk.collectMetrics()
    const mine = (name: string) =>
      pointsOf(collected, name).filter((point) => point.attributes.worker_id === 'relay-metrics')
    const value = (name: string, attributes: Record<string, string> = {}) =>
      mine(name).find((point) =>
        Object.entries(attributes).every(([key, wanted]) => point.attributes[key] === wanted),
      )?.value
    expect(value('txbox.relay.published')).toBe(2)
    expect(value('txbox.relay.failed')).toBe(1)
    expect(value('txbox.relay.retried')).toBe(1)
    expect(value('txbox.relay.outbox_events', { status: 'sent' })).toBe(2)
    expect(value('txbox.relay.outbox_events', { status: 'pending' })).toBe(1)
    expect(value('txbox.relay.publish_failures', { reason: 'error' })).toBe(1)
    expect(typeof value('txbox.relay.oldest_pending_age_ms')).toBe('number')
    const publishes = mine('txbox.relay.publish_duration')
    expect(publishes.reduce((sum, point) => sum + (point.value as { count: number }).count, 0)).toBe(3)
    const claims = mine('txbox.relay.claim_duration')
    expect(claims.map((point) => (point.value as { count: number }).count)).toEqual([1])
    // A stopped relay is read no more (its snapshot costs two store reads).
    await relay.stop()
    const reads = vi.spyOn(relay, 'metrics')
    await sdk.collectMetrics()
    expect(reads).not.toHaveBeenCalled()
  })
})
