import { connect, headers, type JetStreamManager, type NatsConnection, StorageType } from 'nats'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { OutboxEvent } from '../src/index.js'
import { createJetStreamPublisher, JetStreamPublishError } from '../src/nats/index.js'
import { PubAckCorrelator, PubAckFailure } from '../src/nats/pub-acks.js'

const url = process.env.TXBOX_NATS_URL
if (!url && process.env.TXBOX_REQUIRE_ALL === '1')
  throw new Error('TXBOX_REQUIRE_ALL=1 but TXBOX_NATS_URL is not set')

const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`
const stream = `TXBOX_ACKS_${suffix.toUpperCase()}`
/** Stored by the test's stream. */
const stored = (name: string) => `txboxacks${suffix}.s.${name}`
/** Taken by a plain subscriber of the test, never by a stream: its replies are the test's to write. */
const answeredByTest = (name: string) => `txboxacks${suffix}.t.${name}`
const bytes = (text: string) => new TextEncoder().encode(text)

const event = (eventId: string, subject: string): OutboxEvent => ({
  eventId,
  subject,
  payload: JSON.stringify({ eventId }),
  status: 'publishing',
  enqueuedAt: new Date(),
  retryCount: 0,
  availableAt: new Date(),
})

describe.skipIf(!url)(
  `PubAck correlation over one reply subscription (live NATS)${url ? '' : ' (skipped: TXBOX_NATS_URL is not set)'}`,
  () => {
    let nc: NatsConnection
    let jsm: JetStreamManager

    beforeAll(async () => {
      nc = await connect({ servers: url as string, noAsyncTraces: true })
      jsm = await nc.jetstreamManager()
      await jsm.streams.add({ name: stream, subjects: [stored('>')], storage: StorageType.Memory })
    })

    afterAll(async () => {
      await jsm?.streams.delete(stream).catch(() => false)
      await nc?.close()
    })

    it('matches every one of many concurrent PubAcks to its own publish', async () => {
      const acks = new PubAckCorrelator(nc, 5_000)
      const ids = Array.from({ length: 500 }, (_, i) => `many-${i}`)
      const answers = await Promise.all(
        ids.map((id) => {
          const h = headers()
          h.set('Nats-Msg-Id', id)
          return acks.publish(stored('many'), bytes(id), h)
        }),
      )
      expect(new Set(answers.map((ack) => ack.seq)).size).toBe(ids.length)
      for (const [index, ack] of answers.entries()) {
        expect(ack.stream).toBe(stream)
        expect(ack.duplicate).toBe(false)
        const message = await jsm.streams.getMessage(stream, { seq: ack.seq })
        expect(message.header?.get('Nats-Msg-Id')).toBe(ids[index])
      }
      // The same id again: JetStream's duplicate answer reaches the right caller.
      const again = headers()
      again.set('Nats-Msg-Id', 'many-7')
      expect(await acks.publish(stored('many'), bytes('many-7'), again)).toEqual({
        stream,
        seq: answers[7]?.seq,
        duplicate: true,
      })
    })

    it('times out a publish nobody acknowledges, and ignores its answer when it comes late', async () => {
      const late: (() => void)[] = []
      const silent = nc.subscribe(answeredByTest('slow'), {
        callback: (_error, message) => {
          late.push(() => message.respond(bytes(JSON.stringify({ stream: 'LATE', seq: 99 }))))
        },
      })
      const acks = new PubAckCorrelator(nc, 100)
      const failure = await acks
        .publish(answeredByTest('slow'), bytes('x'), headers())
        .catch((error) => error)
      expect(failure).toBeInstanceOf(PubAckFailure)
      expect(failure).toMatchObject({ reason: 'timeout' })
      for (const answer of late) answer()
      await nc.flush()
      // The late answer matched no one; the correlator goes on answering the next publish.
      const next = headers()
      next.set('Nats-Msg-Id', 'after-timeout')
      expect(await acks.publish(stored('after'), bytes('y'), next)).toMatchObject({
        stream,
        duplicate: false,
      })
      silent.unsubscribe()
    })

    it('rejects an answer that is not a PubAck: an API error, no JSON, no stream', async () => {
      const replies = [
        JSON.stringify({
          error: { code: 400, err_code: 10060, description: 'expected stream does not match' },
        }),
        'not json',
        JSON.stringify({ seq: 4 }),
      ]
      let next = 0
      const fake = nc.subscribe(answeredByTest('fake'), {
        callback: (_error, message) => message.respond(bytes(replies[next++] ?? '')),
      })
      const acks = new PubAckCorrelator(nc, 5_000)
      const outcomes = []
      for (const _ of replies)
        outcomes.push(
          await acks.publish(answeredByTest('fake'), bytes('x'), headers()).catch((error) => error),
        )
      expect(outcomes.map((error) => [error.reason, error.message])).toEqual([
        ['rejected', 'expected stream does not match'],
        ['rejected', 'the PubAck is not JSON'],
        ['rejected', 'the PubAck names no stream and sequence'],
      ])
      fake.unsubscribe()
    })

    it('publisher: reports a timeout and a missing stream with their reasons', async () => {
      const silent = nc.subscribe(answeredByTest('never'), { callback: () => undefined })
      const publisher = createJetStreamPublisher({ connection: nc, timeoutMs: 100 })
      const timeout = await publisher.publish(event('t-1', answeredByTest('never'))).catch((error) => error)
      expect(timeout).toBeInstanceOf(JetStreamPublishError)
      expect(timeout).toMatchObject({ reason: 'timeout', eventId: 't-1', permanent: false })
      const noStream = await publisher.publish(event('n-1', `nostream${suffix}.x`)).catch((error) => error)
      expect(noStream).toMatchObject({ reason: 'no-stream', eventId: 'n-1' })
      silent.unsubscribe()
    })

    it('publisher: expectStream refuses a stream of another name', async () => {
      const publisher = createJetStreamPublisher({ connection: nc, expectStream: 'SOME_OTHER_STREAM' })
      const refused = await publisher.publish(event('x-1', stored('expect'))).catch((error) => error)
      expect(refused).toMatchObject({ reason: 'rejected', eventId: 'x-1' })
      expect(String(refused.message)).toMatch(/expected stream/i)
      const right = createJetStreamPublisher({ connection: nc, expectStream: stream })
      expect(await right.publish(event('x-2', stored('expect')))).toMatchObject({ stream, duplicate: false })
    })

    it("uses the connection's inbox prefix, and rejects what waits when the connection closes", async () => {
      const own = await connect({ servers: url as string, inboxPrefix: `txboxinbox${suffix}` })
      const seen: string[] = []
      const spy = nc.subscribe(`txboxinbox${suffix}.>`, { callback: (_e, m) => seen.push(m.subject) })
      await nc.flush()
      own.subscribe(answeredByTest('closing'), { callback: () => undefined })
      await own.flush()
      const acks = new PubAckCorrelator(own, 60_000)
      const h = headers()
      h.set('Nats-Msg-Id', 'prefixed')
      expect(await acks.publish(stored('prefixed'), bytes('p'), h)).toMatchObject({ stream })
      await nc.flush()
      expect(seen.length).toBe(1)
      const waiting = acks.publish(answeredByTest('closing'), bytes('c'), headers()).catch((error) => error)
      await own.flush()
      await own.close()
      expect(await waiting).toMatchObject({ reason: 'rejected' })
      expect(
        await acks.publish(stored('closed'), bytes('d'), headers()).catch((error) => error),
      ).toMatchObject({
        reason: 'rejected',
      })
      spy.unsubscribe()
    })
  },
)
