import { connect, type JetStreamManager, type NatsConnection } from 'nats'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createMemoryStore,
  type InboxHandlerContext,
  InboxProcessor,
  type MemoryTransaction,
  natsMessageBytes,
  type OutboxEvent,
  OutboxRelay,
  PayloadTooLargeError,
  ValidationError,
} from '../src/index.js'
import { serverTakesTermReason, toInboxMessage } from '../src/nats/inbox-source.js'
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

describe('terminate with a reason', () => {
  it('is sent only to servers that honour it (2.10 and later); older or unknown servers get the bare terminate', () => {
    expect(serverTakesTermReason('2.10.0')).toBe(true)
    expect(serverTakesTermReason('2.11.3')).toBe(true)
    expect(serverTakesTermReason('3.0.0')).toBe(true)
    expect(serverTakesTermReason('2.9.10')).toBe(false)
    expect(serverTakesTermReason('2.9.25')).toBe(false)
    expect(serverTakesTermReason(undefined)).toBe(false)
    expect(serverTakesTermReason('garbage')).toBe(false)
  })
})

describe('JetStream inbox source options', () => {
  it('rejects a pull lifetime JetStream would refuse, naming the option', () => {
    const connection = { jetstream: () => ({}) } as unknown as NatsConnection
    for (const pullExpiresMs of [999, 0, 1500.5, Number.NaN]) {
      expect(() =>
        createJetStreamInboxSource({ connection, stream: 'S', durable: 'd', pullExpiresMs }),
      ).toThrow(/^\[txbox\] \[nats\] pullExpiresMs must be an integer of at least 1000/)
    }
    expect(() =>
      createJetStreamInboxSource({ connection, stream: 'S', durable: 'd', pullExpiresMs: 1_000 }),
    ).not.toThrow()
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

    it('dedupes through the publisher even when the event has a header that mentions Nats-Msg-Id', async () => {
      const publisher = createJetStreamPublisher({ connection: nc })
      for (const [id, headers] of [
        ['mention-1', JSON.stringify({ 'X-Nats-Msg-Id': 'other' })],
        ['mention-2', 'raw mentioning Nats-Msg-Id: other'],
      ] as const) {
        const first = await publisher.publish(event(id, { headers }))
        const again = await publisher.publish(event(id, { headers }))
        expect(first.duplicate).toBe(false)
        expect(again).toMatchObject({ duplicate: true, seq: first.seq, duplicateCheck: 'same' })
      }
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
      const seen: InboxHandlerContext<undefined>[] = []
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

describe.skipIf(!url)(
  `ids, subjects and sizes refused at enqueue are exactly what NATS alters or refuses (${url ? 'TXBOX_NATS_URL' : 'skipped: TXBOX_NATS_URL not set'})`,
  () => {
    let nc: NatsConnection
    let jsm: JetStreamManager
    const wireStream = `${stream}_WIRE`
    const wireSubject = (name: string) => `txboxwire${suffix}.${name}`

    beforeAll(async () => {
      nc = await connect({ servers: url as string })
      jsm = await nc.jetstreamManager()
      await ensureStream(jsm, { name: wireStream, subjects: [wireSubject('>')], duplicateWindowMs: 60_000 })
    })

    afterAll(async () => {
      await jsm?.streams.delete(wireStream).catch(() => false)
      await nc?.close()
    })

    /** The raw header block JetStream stored for `seq`, undecoded (nats.js's decoder trims values). */
    const storedHeaderBytes = async (seq: number): Promise<Buffer> => {
      const reply = await nc.request(`$JS.API.STREAM.MSG.GET.${wireStream}`, JSON.stringify({ seq }))
      const { message } = JSON.parse(new TextDecoder().decode(reply.data)) as { message: { hdrs: string } }
      return Buffer.from(message.hdrs, 'base64')
    }

    /** The bytes after `Nats-Msg-Id: ` up to the line's CRLF. */
    const msgIdBytes = (block: Buffer): Buffer => {
      const marker = Buffer.from('\r\nNats-Msg-Id: ')
      const start = block.indexOf(marker) + marker.length
      return block.subarray(start, block.indexOf('\r\n', start))
    }

    it('every awkward id the validator accepts arrives as Nats-Msg-Id byte for byte, and stays distinct', async () => {
      const store = createMemoryStore()
      const publisher = createJetStreamPublisher({ connection: nc })
      const awkward = [
        'plain-1',
        'caf\u00e9', // NFC
        'cafe\u0301', // NFD: same text to a reader, another event
        'STRASSE',
        'stra\u00dfe',
        'strasse',
        'a:b:c',
        'Nats-Msg-Id: spoof',
        '"double" \'single\' `back`',
        'back\\slash',
        'inner space',
        'inner\u00a0nbsp',
        'line\u2028separator',
        'bom\ufeffinside',
        '🎉👩‍👩‍👧‍👦',
        '注文-주문-طلب',
        '%41%0D%0A',
        '{"json":true}',
        'x'.repeat(255),
        `${'🎉'.repeat(127)}x`,
        // Refused by the validator: NATS would alter or refuse them.
        'edge ',
        ' edge',
        'tab\tinside',
        'cr\rinside',
        'lf\ninside',
        'nel\u0085inside',
        'del\u007finside',
        '\u3000ideographic',
      ]
      const accepted: string[] = []
      for (const eventId of awkward) {
        try {
          await store.outbox.findOrCreate({ eventId, subject: wireSubject('ids'), payload: 'p' })
          accepted.push(eventId)
        } catch (error) {
          expect(error).toBeInstanceOf(ValidationError)
        }
      }
      expect(accepted).toEqual(awkward.slice(0, 20))
      for (const eventId of accepted) {
        const stored = (await store.outbox.get(eventId)) as OutboxEvent
        const receipt = await publisher.publish(stored)
        expect(receipt.duplicate, `${JSON.stringify(eventId)} is new to JetStream`).toBe(false)
        const onWire = msgIdBytes(await storedHeaderBytes(receipt.seq as number))
        expect(onWire.equals(Buffer.from(eventId, 'utf8')), JSON.stringify(eventId)).toBe(true)
        // Republished, JetStream recognizes the very same id.
        expect((await publisher.publish(stored)).duplicate).toBe(true)
      }
    })

    it('two ids that differ only by edge whitespace cannot both be enqueued (NATS would make them one message)', async () => {
      const store = createMemoryStore()
      await store.outbox.findOrCreate({ eventId: 'o-1', subject: wireSubject('edge'), payload: 'first' })
      for (const eventId of ['o-1 ', ' o-1', 'o-1\t', 'o-1\u00a0', 'o-1\ufeff']) {
        await expect(
          store.outbox.findOrCreate({ eventId, subject: wireSubject('edge'), payload: 'second' }),
        ).rejects.toBeInstanceOf(ValidationError)
      }
      expect(store.outbox.snapshot().map((event) => event.eventId)).toEqual(['o-1'])
      // Why: published anyway, the second id reaches JetStream trimmed and is taken for the first.
      const publisher = createJetStreamPublisher({ connection: nc })
      const first = await publisher.publish(event('w-1', { subject: wireSubject('edge') }))
      const second = await publisher.publish(event('w-1 ', { subject: wireSubject('edge') }))
      expect(first.duplicate).toBe(false)
      expect(second).toMatchObject({ duplicate: true, seq: first.seq })
    })

    it("refuses wildcard subjects that nats-server would store under a pattern, accepts '*' inside a token", async () => {
      const store = createMemoryStore()
      for (const subject of [
        wireSubject('*'),
        wireSubject('>'),
        `${wireSubject('a')}.`,
        `${wireSubject('a')}..b`,
      ]) {
        await expect(
          store.outbox.findOrCreate({ eventId: 'w', subject, payload: 'p' }),
        ).rejects.toBeInstanceOf(ValidationError)
      }
      const literal = await store.outbox.findOrCreate({
        eventId: 'lit',
        subject: wireSubject('v*2>x'),
        payload: 'p',
      })
      const receipt = await createJetStreamPublisher({ connection: nc }).publish(literal)
      const stored = await jsm.streams.getMessage(wireStream, { seq: receipt.seq as number })
      expect(stored.subject).toBe(wireSubject('v*2>x'))
    })

    it("natsMessageBytes is the message size NATS checks: an event at the server's max_payload publishes, one byte more is refused by both", async () => {
      const maxPayload = nc.info?.max_payload as number
      const headers = JSON.stringify({ traceparent: '00-abc-01' })
      const base = { eventId: 'at-limit', subject: wireSubject('size'), payload: '', headers }
      const payload = 'é'.repeat(Math.floor((maxPayload - natsMessageBytes(base)) / 2))
      const filler = 'x'.repeat(maxPayload - natsMessageBytes({ ...base, payload }))
      const atLimit = { ...base, payload: payload + filler }
      expect(natsMessageBytes(atLimit)).toBe(maxPayload)
      // What nats.js writes: the header block its MsgHdrs encodes (`encode` is not on the public type).
      const written = natsHeadersFor(atLimit.eventId, headers) as unknown as { encode(): Uint8Array }
      expect(written.encode().length + Buffer.byteLength(atLimit.payload)).toBe(maxPayload)

      const store = createMemoryStore({ maxEventBytes: maxPayload })
      const stored = await store.outbox.findOrCreate(atLimit)
      const publisher = createJetStreamPublisher({ connection: nc })
      const receipt = await publisher.publish(stored)
      expect(receipt.duplicate).toBe(false)
      const back = await jsm.streams.getMessage(wireStream, { seq: receipt.seq as number })
      expect(back.data.length).toBe(Buffer.byteLength(atLimit.payload))

      // Same id length, one more payload byte.
      const overLimit = { ...atLimit, eventId: 'over-lim', payload: `${atLimit.payload}x` }
      expect(natsMessageBytes(overLimit)).toBe(maxPayload + 1)
      await expect(store.outbox.findOrCreate(overLimit)).rejects.toBeInstanceOf(PayloadTooLargeError)
      expect(store.outbox.snapshot().map((event) => event.eventId)).toEqual(['at-limit'])
      // NATS itself refuses the same bytes (the publisher's own guard left out of the way).
      const refused = await nc
        .jetstream()
        .publish(overLimit.subject, new TextEncoder().encode(overLimit.payload), {
          headers: natsHeadersFor(overLimit.eventId, overLimit.headers),
        })
        .catch((error: unknown) => error)
      expect(refused).toMatchObject({ code: 'MAX_PAYLOAD_EXCEEDED' })
    })

    it("carries a keyed event's orderingKey and keySeq as headers, and counts the sequence at its longest at enqueue", async () => {
      const store = createMemoryStore()
      const orderingKey = 'Order-42 é'
      const [first, second] = await store.outbox.findOrCreateMany([
        { eventId: 'keyed-1', subject: wireSubject('keyed'), payload: 'a', orderingKey },
        { eventId: 'keyed-2', subject: wireSubject('keyed'), payload: 'b', orderingKey },
      ])
      expect([first?.keySeq, second?.keySeq]).toEqual([1, 2])
      const publisher = createJetStreamPublisher({ connection: nc })
      const receipt = await publisher.publish(second as OutboxEvent)
      const back = await jsm.streams.getMessage(wireStream, { seq: receipt.seq as number })
      expect(back.header?.get('Txbox-Ordering-Key')).toBe(orderingKey)
      expect(back.header?.get('Txbox-Key-Seq')).toBe('2')
      const decoded = decodeNatsHeaders(back.header)
      expect(decoded).toMatchObject({ eventId: 'keyed-2', orderingKey, keySeq: 2, stored: undefined })
      expect(decoded.map).toEqual({})
      // The written header block is what natsMessageBytes counts with the assigned keySeq.
      const written = natsHeadersFor('keyed-2', undefined, second) as unknown as { encode(): Uint8Array }
      expect(written.encode().length + 1).toBe(natsMessageBytes(second as OutboxEvent))
      // Before the store assigns it, the sequence counts as 16 digits: the largest it can be.
      const unassigned = { eventId: 'keyed-3', payload: 'c', orderingKey }
      expect(natsMessageBytes(unassigned) - natsMessageBytes({ ...unassigned, keySeq: 2 })).toBe(15)
    })

    it('a terminated message is done on this server: not pending, never delivered again', async () => {
      const durable = `term${suffix}`
      await ensureDurableConsumer(jsm, {
        stream: wireStream,
        durable,
        ackWaitMs: 30_000,
        filterSubject: wireSubject('term'),
      })
      await createJetStreamPublisher({ connection: nc }).publish(
        event('term-1', { subject: wireSubject('term') }),
      )
      const consumer = await nc.jetstream().consumers.get(wireStream, durable)
      const msg = await consumer.next({ expires: 5_000 })
      if (msg === null) throw new Error('the message was not delivered')
      // What createJetStreamInboxSource hands the processor, with the same server check.
      const received = toInboxMessage(msg, undefined, () => serverTakesTermReason(nc.info?.version))
      await received.term('poison: never deliver again')
      await nc.flush()
      const deadline = Date.now() + 5_000
      let pending = -1
      while (Date.now() < deadline) {
        pending = (await jsm.consumers.info(wireStream, durable)).num_ack_pending
        if (pending === 0) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      expect(pending).toBe(0)
    })

    it('puts Nats-Msg-Id first, so a header that mentions it cannot hide the dedup id from JetStream', async () => {
      const js = nc.jetstream()
      for (const headers of [
        JSON.stringify({ 'X-Nats-Msg-Id': 'other' }),
        'raw mentioning Nats-Msg-Id: other',
      ]) {
        const first = await js.publish(wireSubject('order'), new Uint8Array(1), {
          headers: natsHeadersFor(`order-${headers.length}`, headers),
        })
        const again = await js.publish(wireSubject('order'), new Uint8Array(1), {
          headers: natsHeadersFor(`order-${headers.length}`, headers),
        })
        expect(first.duplicate).toBe(false)
        expect(again).toMatchObject({ duplicate: true, seq: first.seq })
      }
    })
  },
)
