import { describe, expect, it } from 'vitest'
import {
  createMemoryStore,
  createPrometheusExporter,
  ManualClock,
  type MemoryStore,
  type OutboxEvent,
  OutboxRelay,
  type OutboxRelayOptions,
  type TxboxLogger,
} from '../src/index.js'
import { FakePublisher, flush, ManualSleeper, relayOverMemory } from './helpers.js'

/** A logger that keeps every line, to assert on what an operator would read. */
class RecordingLogger implements TxboxLogger {
  readonly lines: { level: string; message: string; fields: Record<string, unknown> }[] = []
  debug(message: string, fields: Record<string, unknown> = {}): void {
    this.lines.push({ level: 'debug', message, fields })
  }
  info(message: string, fields: Record<string, unknown> = {}): void {
    this.lines.push({ level: 'info', message, fields })
  }
  warn(message: string, fields: Record<string, unknown> = {}): void {
    this.lines.push({ level: 'warn', message, fields })
  }
  error(message: string, fields: Record<string, unknown> = {}): void {
    this.lines.push({ level: 'error', message, fields })
  }
  at(level: string): { message: string; fields: Record<string, unknown> }[] {
    return this.lines.filter((line) => line.level === level)
  }
}

const MiB = 1_048_576

const setup = (
  options: Partial<Omit<OutboxRelayOptions, 'publisher'>> = {},
  storeOptions: { maxEventBytes?: number } = {},
) => {
  const logger = new RecordingLogger()
  return { ...relayOverMemory({ logger, ...options }, storeOptions), logger }
}

const enqueue = async (store: MemoryStore, ids: string[], payload = (id: string) => id): Promise<void> => {
  await store.outbox.findOrCreateMany(
    ids.map((eventId) => ({ eventId, subject: 'orders.created', payload: payload(eventId) })),
  )
}

const timeoutError = (eventId: string) =>
  Object.assign(new Error(`no PubAck for "${eventId}" in time`), { reason: 'timeout' })

describe('OutboxRelay: a duplicate answer is checked, not trusted', () => {
  it('marks a verified duplicate sent, counts it and logs it with the stored sequence', async () => {
    const { store, publisher, logger, relay } = setup()
    await enqueue(store, ['d-1', 'd-2'])
    publisher.outcome = (event) =>
      event.eventId === 'd-1'
        ? { duplicate: true, stream: 'ORDERS', seq: 41, duplicateCheck: 'same' }
        : { duplicate: false, stream: 'ORDERS', seq: 42 }
    await relay.runOnce()
    expect((await store.outbox.get('d-1'))?.status).toBe('sent')
    expect(relay.counters()).toMatchObject({
      published: 2,
      duplicates: 1,
      duplicateConflicts: 0,
      duplicatesUnverified: 0,
    })
    const [line] = logger.at('warn').filter((entry) => entry.message.includes('duplicate'))
    expect(line?.fields).toMatchObject({ eventId: 'd-1', stream: 'ORDERS', storedSeq: 41 })
  })

  it('dead-letters an event whose id another message holds, loudly, and never marks it sent', async () => {
    const { store, publisher, logger, relay } = setup()
    await enqueue(store, ['c-1', 'c-2'])
    publisher.outcome = (event) =>
      event.eventId === 'c-1'
        ? {
            duplicate: true,
            stream: 'ORDERS',
            seq: 7,
            duplicateCheck: 'conflict',
            duplicateDetail: "stored message #7: its payload is 3 bytes that differ from the event's 3",
          }
        : { duplicate: false }
    await relay.runOnce()
    const failed = await store.outbox.get('c-1')
    expect(failed?.status).toBe('failed')
    expect(failed?.errorMessage).toMatch(/^NOT delivered: JetStream answered "duplicate"/)
    expect(failed?.errorMessage).toContain('seq 7')
    expect(failed?.errorMessage).toContain('requeueFailed')
    expect((await store.outbox.get('c-2'))?.status).toBe('sent')
    expect(relay.counters()).toMatchObject({ published: 1, duplicates: 1, duplicateConflicts: 1, dead: 1 })
    expect((await relay.metrics()).deadLettered).toEqual({ 'duplicate-conflict': 1 })
    const errors = logger.at('error')
    expect(
      errors.some((entry) => entry.message.startsWith('duplicate conflict') && entry.fields.storedSeq === 7),
    ).toBe(true)
  })

  it('counts a duplicate it could not verify (or a publisher that does not check) as delivered, with a warning', async () => {
    const { store, publisher, logger, relay } = setup()
    await enqueue(store, ['u-1', 'u-2'])
    publisher.outcome = (event) =>
      event.eventId === 'u-1'
        ? {
            duplicate: true,
            stream: 'ORDERS',
            seq: 3,
            duplicateCheck: 'unverified',
            duplicateDetail: 'purged',
          }
        : 'duplicate'
    await relay.runOnce()
    expect(await store.outbox.getCountByStatus()).toMatchObject({ sent: 2, failed: 0 })
    expect(relay.counters()).toMatchObject({ duplicates: 2, duplicatesUnverified: 2, duplicateConflicts: 0 })
    expect(logger.at('warn').filter((entry) => entry.message.includes('could not be compared'))).toHaveLength(
      2,
    )
  })
})

describe('OutboxRelay: bounded bytes', () => {
  /** The store's outbox with every claim's limit recorded. */
  const recordClaims = (store: MemoryStore) => {
    const limits: number[] = []
    const claim = store.outbox.claim.bind(store.outbox)
    store.outbox.claim = async (options) => {
      limits.push(options.limit ?? 100)
      return claim(options)
    }
    return limits
  }

  it('claims at most maxBatchBytes / maxEventBytes events', async () => {
    const { store, relay } = setup({ batchSize: 100, maxBatchBytes: 10 * MiB, maxEventBytes: MiB })
    const limits = recordClaims(store)
    await enqueue(
      store,
      Array.from({ length: 25 }, (_, index) => `s-${index}`),
    )
    expect(await relay.runOnce()).toBe(10)
    expect(limits).toEqual([10])
    expect((await relay.metrics()).claimLimit).toBe(10)
  })

  it('takes maxEventBytes from the transport (NATS max_payload) when not given', async () => {
    const clock = new ManualClock()
    const store = createMemoryStore({ clock: clock.now })
    const publisher = Object.assign(new FakePublisher(), { maxMessageBytes: () => 8 * MiB })
    const relay = new OutboxRelay({
      outbox: store.outbox,
      publisher,
      clock: clock.now,
      claimRampUp: false,
      maxBatchBytes: 64 * MiB,
    })
    expect((await relay.metrics()).claimLimit).toBe(8)
  })

  it('dead-letters legacy events over maxEventBytes at once, publishes the small ones behind them, claims stay bounded', async () => {
    // A store that accepted big events before the limit existed.
    const { store, publisher, relay } = setup(
      { batchSize: 100, maxEventBytes: MiB, maxBatchBytes: 4 * MiB, claimRampUp: true },
      { maxEventBytes: 16 * MiB },
    )
    const limits = recordClaims(store)
    const huge = ['huge-0', 'huge-1', 'huge-2']
    const small = Array.from({ length: 20 }, (_, index) => `small-${index}`)
    await enqueue(store, huge, () => 'x'.repeat(3 * MiB))
    await enqueue(store, small)
    for (let turn = 0; turn < 20 && (await relay.runOnce()) > 0; turn++) {}
    expect(await store.outbox.getCountByStatus()).toEqual({ pending: 0, publishing: 0, sent: 20, failed: 3 })
    expect(publisher.published.map((event) => event.eventId)).toEqual(small)
    for (const id of huge) {
      const event = await store.outbox.get(id)
      expect(event?.status).toBe('failed')
      expect(event?.retryCount).toBe(1)
      expect(event?.errorMessage).toMatch(
        /over the relay's maxEventBytes of 1048576: it can never be published/,
      )
    }
    // Start at 1; 1 huge event (3 MiB) fits 4 MiB: double; 2 huge (6 MiB) do not: back to 1;
    // then the small ones ramp up to the byte bound of 4 and never beyond.
    expect(limits.slice(0, 5)).toEqual([1, 2, 1, 2, 4])
    expect(Math.max(...limits)).toBe(4)
    expect((await relay.metrics()).deadLettered).toEqual({ 'too-large': 3 })
  })

  it('dead-letters at once an event the transport refuses for good (over max_payload), without retrying', async () => {
    const { store, publisher, relay } = setup({ maxAttempts: 10 })
    await enqueue(store, ['big', 'ok'])
    publisher.outcome = (event) =>
      event.eventId === 'big'
        ? Object.assign(new Error('over max_payload'), { reason: 'too-large', permanent: true })
        : 'ok'
    await relay.runOnce()
    expect(await store.outbox.get('big')).toMatchObject({
      status: 'failed',
      retryCount: 1,
      errorMessage: 'publish failed permanently (not retried): over max_payload',
    })
    expect((await relay.metrics()).deadLettered).toEqual({ 'too-large': 1 })
    expect(relay.counters()).toMatchObject({ retried: 0, dead: 1, published: 1 })
  })
})

describe('OutboxRelay: a hung broker shows', () => {
  it('turns health not-ok at the first timed-out publish, says why, and ok again after a success', async () => {
    const { clock, store, publisher, sleeper, relay } = setup({
      healthStaleMs: 3_600_000,
      pollIntervalMs: 1_000,
      minPollIntervalMs: 1_000,
    })
    await enqueue(store, ['t-0', 't-1'])
    publisher.outcome = (event: OutboxEvent) => timeoutError(event.eventId)
    relay.start()
    await flush()
    expect(relay.counters()).toMatchObject({ failed: 2, retried: 2 })
    const down = await relay.health()
    expect(down).toMatchObject({
      ok: false,
      publisher: { ok: false },
      loop: { ok: true },
      store: { ok: true },
    })
    expect(down.publisher.detail).toMatch(
      /^2 publishes timed out since .* \(0 s\) and none succeeded since; last: no PubAck/,
    )
    clock.advance(5_000)
    expect((await relay.health()).publisher.detail).toMatch(/\(5 s\)/)
    publisher.outcome = () => 'ok'
    sleeper.fire(1_000)
    await flush()
    expect(relay.counters().published).toBe(2)
    expect(await relay.health()).toMatchObject({ ok: true, publisher: { ok: true } })
    await relay.stop()
  })

  it('does not fail health for failures other than timeouts', async () => {
    const { store, publisher, relay } = setup({ healthStaleMs: 3_600_000 })
    await enqueue(store, ['n-0'])
    // A missing stream is a deployment problem of some subjects, not a dead transport.
    publisher.outcome = () => Object.assign(new Error('no stream'), { reason: 'no-stream' })
    relay.start()
    await flush()
    expect(relay.counters().failed).toBe(1)
    expect(await relay.health()).toMatchObject({ ok: true, publisher: { ok: true } })
    expect((await relay.metrics()).publishFailures).toEqual({ 'no-stream': 1 })
    await relay.stop()
  })

  it('counts every failed publish by reason and logs them at most once per failureLogEveryMs', async () => {
    const { clock, store, publisher, logger, relay } = setup({
      failureLogEveryMs: 10_000,
      batchSize: 10,
      // Not due again during the test: each failure below is a new event's first attempt.
      backoff: { baseMs: 3_600_000, maxMs: 3_600_000, jitter: 0 },
    })
    publisher.outcome = (event) =>
      event.eventId.startsWith('s')
        ? Object.assign(new Error('no stream'), { reason: 'no-stream' })
        : timeoutError(event.eventId)
    await enqueue(
      store,
      Array.from({ length: 10 }, (_, index) => `t-${index}`),
    )
    await relay.runOnce()
    const summaries = () => logger.at('warn').filter((entry) => entry.message.startsWith('publishes failed'))
    // The first failure is logged at once; the other nine wait for the next line.
    expect(summaries()).toHaveLength(1)
    expect(summaries()[0]?.fields).toMatchObject({ failed: 1, byReason: { timeout: 1 } })
    clock.advance(9_999)
    await enqueue(store, ['s-0'])
    await relay.runOnce()
    expect(summaries()).toHaveLength(1)
    clock.advance(1)
    await enqueue(store, ['s-1'])
    await relay.runOnce()
    // The turn's first step wrote the line that was due (without waiting for a new failure),
    // so s-1 opened the next interval.
    expect(summaries()).toHaveLength(2)
    expect(summaries()[1]?.fields).toMatchObject({
      failed: 10,
      byReason: { timeout: 9, 'no-stream': 1 },
      sinceMs: 10_000,
      lastEventId: 's-0',
    })
    await enqueue(store, ['s-2'])
    await relay.runOnce()
    expect(summaries()).toHaveLength(2)
    expect((await relay.metrics()).publishFailures).toEqual({ timeout: 10, 'no-stream': 3 })
    expect(relay.counters()).toMatchObject({ failed: 13, retried: 13 })
    // The last failures of a burst are logged once their interval has passed, with no new failure.
    clock.advance(10_000)
    await relay.runOnce()
    expect(summaries()).toHaveLength(3)
    expect(summaries()[2]?.fields).toMatchObject({
      failed: 2,
      byReason: { 'no-stream': 2 },
      lastEventId: 's-2',
    })
    // The end of the timeouts is logged once.
    publisher.outcome = () => 'ok'
    await enqueue(store, ['ok-0', 'ok-1'])
    await relay.runOnce()
    const recovered = logger.at('warn').filter((entry) => entry.message.startsWith('publishing works again'))
    expect(recovered).toHaveLength(1)
    expect(recovered[0]?.fields).toMatchObject({ timedOut: 10, forMs: 20_000 })
    expect(summaries()).toHaveLength(3)
  })
})

describe('OutboxRelay: Prometheus metrics at every scrape', () => {
  /** The value of one series in the exposition text, or undefined when it is absent. */
  const sample = (text: string, series: string): number | undefined => {
    const line = text.split('\n').find((entry) => entry.startsWith(`${series} `))
    return line === undefined ? undefined : Number(line.slice(series.length + 1))
  }
  const worker = 'worker_id="relay-a"'

  it('reports the pending age and counts per status before, during and after a backlog', async () => {
    const { clock, store, publisher, relay } = setup({ batchSize: 4 })
    // First scrape on an empty outbox: every series exists (the age used to be missing).
    const exporter = await createPrometheusExporter({ relay })
    let text = await exporter.metrics()
    expect(sample(text, `txbox_relay_oldest_pending_age_ms{${worker}}`)).toBe(0)
    expect(sample(text, `txbox_relay_outbox_events{${worker},status="pending"}`)).toBe(0)
    expect(sample(text, `txbox_relay_claim_duration_seconds_count{${worker}}`)).toBe(0)

    await enqueue(store, ['b-0', 'b-1', 'b-2', 'b-3', 'b-4', 'b-5'])
    clock.advance(2_500)
    text = await exporter.metrics()
    expect(sample(text, `txbox_relay_oldest_pending_age_ms{${worker}}`)).toBe(2_500)
    expect(sample(text, `txbox_relay_outbox_events{${worker},status="pending"}`)).toBe(6)

    // Half drained, one dead letter on the way.
    publisher.outcome = (event) =>
      event.eventId === 'b-1'
        ? Object.assign(new Error('huge'), { reason: 'too-large', permanent: true })
        : 'ok'
    await relay.runOnce()
    clock.advance(500)
    text = await exporter.metrics()
    expect(sample(text, `txbox_relay_oldest_pending_age_ms{${worker}}`)).toBe(3_000)
    expect(sample(text, `txbox_relay_outbox_events{${worker},status="pending"}`)).toBe(2)
    expect(sample(text, `txbox_relay_outbox_events{${worker},status="sent"}`)).toBe(3)
    expect(sample(text, `txbox_relay_outbox_events{${worker},status="failed"}`)).toBe(1)
    expect(sample(text, `txbox_relay_dead_lettered_total{${worker},reason="too-large"}`)).toBe(1)
    expect(sample(text, `txbox_relay_publish_failures_total{${worker},reason="too-large"}`)).toBe(1)

    // Drained: the age drops to 0 (it used to freeze at its last value).
    await relay.runOnce()
    text = await exporter.metrics()
    expect(sample(text, `txbox_relay_oldest_pending_age_ms{${worker}}`)).toBe(0)
    expect(sample(text, `txbox_relay_outbox_events{${worker},status="pending"}`)).toBe(0)
    expect(sample(text, `txbox_relay_outbox_events{${worker},status="sent"}`)).toBe(5)
    expect(sample(text, `txbox_relay_published_total{${worker}}`)).toBe(5)
    expect(sample(text, `txbox_relay_claim_duration_seconds_count{${worker}}`)).toBe(2)
    expect(sample(text, `txbox_relay_claim_duration_seconds_bucket{${worker},le="+Inf"}`)).toBe(2)
    expect(sample(text, `txbox_relay_publish_duration_seconds_count{${worker}}`)).toBe(6)
    expect(text).toContain('# TYPE txbox_relay_publish_duration_seconds histogram')

    // The store down: the series it feeds are absent from the scrape, not stale.
    store.outbox.findPending = async () => {
      throw new Error('db down')
    }
    store.outbox.getCountByStatus = async () => {
      throw new Error('db down')
    }
    text = await exporter.metrics()
    expect(sample(text, `txbox_relay_oldest_pending_age_ms{${worker}}`)).toBeUndefined()
    expect(sample(text, `txbox_relay_outbox_events{${worker},status="sent"}`)).toBeUndefined()
    expect(sample(text, `txbox_relay_published_total{${worker}}`)).toBe(5)
  })

  it('measures claim and publish latency with the relay clock', async () => {
    const clock = new ManualClock()
    const store = createMemoryStore({ clock: clock.now })
    const claim = store.outbox.claim.bind(store.outbox)
    store.outbox.claim = async (options) => {
      clock.advance(120)
      return claim(options)
    }
    const publisher = new FakePublisher()
    publisher.outcome = () => {
      clock.advance(30)
      return 'ok'
    }
    const relay = new OutboxRelay({
      outbox: store.outbox,
      publisher,
      workerId: 'relay-a',
      clock: clock.now,
      claimRampUp: false,
      concurrency: 1,
      sleep: new ManualSleeper().sleep,
    })
    await enqueue(store, ['l-0', 'l-1'])
    await relay.runOnce()
    const metrics = await relay.metrics()
    const bucket = (histogram: typeof metrics.claimDuration, boundMs: number) =>
      histogram.counts[histogram.bucketsMs.indexOf(boundMs)]
    expect(metrics.claimDuration).toMatchObject({ count: 1, sumMs: 120 })
    expect(bucket(metrics.claimDuration, 100)).toBe(0)
    expect(bucket(metrics.claimDuration, 200)).toBe(1)
    expect(metrics.publishDuration).toMatchObject({ count: 2, sumMs: 60 })
    expect(bucket(metrics.publishDuration, 20)).toBe(0)
    expect(bucket(metrics.publishDuration, 50)).toBe(2)
    const text = await (await createPrometheusExporter({ relay })).metrics()
    expect(text).toContain('txbox_relay_claim_duration_seconds_bucket{worker_id="relay-a",le="0.2"} 1')
    expect(text).toContain('txbox_relay_claim_duration_seconds_sum{worker_id="relay-a"} 0.12')
  })
})
