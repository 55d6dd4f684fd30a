import { connect, type JetStreamManager, type NatsConnection } from 'nats'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createMemoryStore,
  type InboxHandlerContext,
  InboxProcessor,
  type MemoryTransaction,
  type OutboxEvent,
  OutboxRelay,
} from '../src/index.js'
import {
  createJetStreamInboxSource,
  createJetStreamPublisher,
  decodeNatsHeaders,
  encodeEventHeaders,
  ensureDurableConsumer,
  ensureStream,
  JetStreamPublishError,
  natsHeadersFor,
} from '../src/nats/index.js'

const url = process.env.TXBOX_NATS_URL
const required = process.env.TXBOX_REQUIRE_ALL === '1'
if (!url && required) throw new Error('TXBOX_REQUIRE_ALL=1 but TXBOX_NATS_URL is not set')

const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`
const stream = `TXBOX_TEST_${suffix.toUpperCase()}`
const subject = (name: string) => `txboxtest${suffix}.${name}`

const event = (eventId: string, fields: Partial<OutboxEvent> = {}): OutboxEvent => ({
  eventId,
  subject: subject('orders'),
  payload: JSON.stringify({ eventId, emoji: '🎉' }),
  status: 'publishing',
  enqueuedAt: new Date(),
  retryCount: 0,
  availableAt: new Date(),
  ...fields,
})

describe('event headers over NATS', () => {
  const roundTrip = (stored: string | undefined) => decodeNatsHeaders(natsHeadersFor('id-1', stored))

  it('carries a JSON object of strings as one NATS header per entry', () => {
    const stored = JSON.stringify({ traceparent: '00-abc-def-01', 'x-tenant': 'acme é' })
    expect(encodeEventHeaders(stored)).toEqual([
      ['traceparent', '00-abc-def-01'],
      ['x-tenant', 'acme é'],
    ])
    expect(roundTrip(stored)).toEqual({
      eventId: 'id-1',
      map: { traceparent: '00-abc-def-01', 'x-tenant': 'acme é' },
      stored,
    })
  })

  it('never drops a headers string it cannot map: raw, or base64 when NATS would alter it', () => {
    for (const stored of [
      'not json',
      '["a"]',
      '{"n":1}',
      '{"Nats-Expected-Stream":"X"}',
      'line\r\nbreak',
      ' pad ',
      '',
    ]) {
      expect(roundTrip(stored).stored).toBe(stored)
    }
    expect(encodeEventHeaders('not json')).toEqual([['Txbox-Headers', 'not json']])
    expect(encodeEventHeaders('line\nbreak')[0]?.[0]).toBe('Txbox-Headers-Base64')
    expect(roundTrip(undefined)).toEqual({ eventId: 'id-1', map: {}, stored: undefined })
  })
})

describe.skipIf(!url)(
  `JetStream publisher and inbox source (${url ? 'TXBOX_NATS_URL' : 'skipped: TXBOX_NATS_URL not set'})`,
  () => {
    let nc: NatsConnection
    let jsm: JetStreamManager

    beforeAll(async () => {
      nc = await connect({ servers: url as string })
      jsm = await nc.jetstreamManager()
      await ensureStream(jsm, { name: stream, subjects: [subject('>')], duplicateWindowMs: 60_000 })
    })

    afterAll(async () => {
      await jsm?.streams.delete(stream).catch(() => false)
      await nc?.close()
    })

    it('publishes with Nats-Msg-Id, awaits the PubAck and reports a republish as a duplicate', async () => {
      const publisher = createJetStreamPublisher({ connection: nc })
      const first = await publisher.publish(
        event('pub-1', { headers: JSON.stringify({ traceparent: 't-1' }) }),
      )
      expect(first).toMatchObject({ duplicate: false, stream })
      const again = await publisher.publish(event('pub-1'))
      expect(again).toMatchObject({ duplicate: true, stream, seq: first.seq })
      const stored = await jsm.streams.getMessage(stream, { seq: first.seq as number })
      expect(stored.header.get('Nats-Msg-Id')).toBe('pub-1')
      expect(stored.header.get('traceparent')).toBe('t-1')
      expect(publisher.health()).toEqual({ ok: true })
    })

    it('fails clearly when no stream matches the subject', async () => {
      const publisher = createJetStreamPublisher({ connection: nc, timeoutMs: 2_000 })
      const error = await publisher
        .publish(event('nowhere-1', { subject: `nostream${suffix}.x` }))
        .catch((e) => e)
      expect(error).toBeInstanceOf(JetStreamPublishError)
      expect(error.reason).toBe('no-stream')
      expect(error.message).toMatch(/no JetStream stream matches subject/)
    })

    it('publishes many with a bounded window', async () => {
      const publisher = createJetStreamPublisher({ connection: nc, window: 16 })
      const events = Array.from({ length: 200 }, (_, index) => event(`many-${index}`))
      const results = await publisher.publishMany(events)
      expect(results.every((result) => result.status === 'fulfilled' && !result.value.duplicate)).toBe(true)
    })

    it('relay -> JetStream -> inbox processor: once, with traceparent, after a transient failure', async () => {
      const store = createMemoryStore()
      const flowSubject = subject('flow')
      const durable = `flow_${suffix}`
      await ensureDurableConsumer(jsm, { stream, durable, filterSubject: flowSubject, ackWaitMs: 5_000 })
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
      const ids = Array.from({ length: 50 }, (_, index) => `flow-${index}`)
      await store.outbox.findOrCreateMany(
        ids.map((eventId) => ({
          eventId,
          subject: flowSubject,
          payload: eventId,
          headers: JSON.stringify({ traceparent }),
        })),
      )
      const relay = new OutboxRelay({
        outbox: store.outbox,
        publisher: createJetStreamPublisher({ connection: nc }),
        batchSize: 20,
        pollIntervalMs: 50,
      })
      const runs = new Map<string, number>()
      const seen: InboxHandlerContext<MemoryTransaction>[] = []
      let failOnce = true
      const processor = new InboxProcessor<MemoryTransaction>({
        inbox: store.inbox,
        source: createJetStreamInboxSource({ connection: nc, stream, durable }),
        backoff: { baseMs: 50, maxMs: 200 },
        concurrency: 4,
        handler: async (context) => {
          const id = context.event.eventId
          if (id === 'flow-7' && failOnce) {
            failOnce = false
            throw new Error('transient')
          }
          runs.set(id, (runs.get(id) ?? 0) + 1)
          seen.push(context)
        },
      })
      relay.start()
      await processor.start()
      const deadline = Date.now() + 30_000
      while (runs.size < ids.length && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 50))
      await relay.stop()
      await processor.stop()
      expect(runs.size).toBe(ids.length)
      expect([...runs.values()].every((count) => count === 1)).toBe(true)
      expect(seen[0]?.headers.traceparent).toBe(traceparent)
      expect(seen[0]?.message.stream).toBe(stream)
      expect(await store.outbox.getCountByStatus()).toMatchObject({ sent: 50, pending: 0, publishing: 0 })
      expect(await store.inbox.getCountByStatus()).toEqual({ processing: 0, processed: 50, failed: 0 })
      expect((await store.inbox.get('flow-7'))?.deliveries).toBe(2)
      expect((await processor.health()).ok).toBe(false)
    })
  },
)
