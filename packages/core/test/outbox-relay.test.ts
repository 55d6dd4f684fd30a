import { describe, expect, it } from 'vitest'
import {
  backoffDelayMs,
  createMemoryStore,
  createPrometheusExporter,
  type MemoryStore,
  OutboxRelay,
  type OutboxRelayOptions,
  resolveBackoff,
  StorageError,
  silentLogger,
  ValidationError,
} from '../src/index.js'
import { FakePublisher, flush, relayOverMemory } from './helpers.js'

const enqueue = async (store: MemoryStore, count: number, prefix = 'e'): Promise<string[]> => {
  const ids = Array.from({ length: count }, (_, index) => `${prefix}-${index}`)
  await store.outbox.findOrCreateMany(
    ids.map((eventId) => ({ eventId, subject: 'orders.created', payload: eventId })),
  )
  return ids
}

// These tests are about batches; the ramp-up from a claim of 1 has its own tests.
const setup = (options: Partial<Omit<OutboxRelayOptions, 'publisher'>> = {}) =>
  relayOverMemory({ backoff: { baseMs: 100, maxMs: 1_000, jitter: 0.5 }, ...options })

describe('backoff', () => {
  const backoff = resolveBackoff('test', { baseMs: 100, maxMs: 5_000, jitter: 0.3 })

  it('doubles per attempt up to maxMs, before jitter', () => {
    const noJitter = (attempt: number) => backoffDelayMs(attempt, backoff, () => 0)
    expect([1, 2, 3, 4, 5, 6, 7, 100, 5_000].map(noJitter)).toEqual([
      100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000,
    ])
  })

  it('keeps the jittered delay within [d * (1 - jitter), d]', () => {
    for (let attempt = 1; attempt <= 12; attempt++) {
      const ceiling = Math.min(5_000, 100 * 2 ** (attempt - 1))
      for (const random of [0, 0.001, 0.25, 0.5, 0.75, 0.999999]) {
        const delay = backoffDelayMs(attempt, backoff, () => random)
        expect(delay).toBeLessThanOrEqual(ceiling)
        expect(delay).toBeGreaterThanOrEqual(Math.floor(ceiling * 0.7))
      }
    }
  })

  it('rejects nonsense', () => {
    expect(() => resolveBackoff('test', { jitter: 2 })).toThrow(ValidationError)
    expect(() => resolveBackoff('test', { baseMs: 10, maxMs: 5 })).toThrow(ValidationError)
    expect(() => resolveBackoff('test', { baseMs: -1 })).toThrow(ValidationError)
  })
})

describe('OutboxRelay', () => {
  it('claims a batch, publishes with bounded concurrency and marks the batch sent', async () => {
    const { store, publisher, relay } = setup({ batchSize: 100, concurrency: 8 })
    const ids = await enqueue(store, 250)
    expect(await relay.runOnce()).toBe(100)
    expect(publisher.published.map((event) => event.eventId)).toEqual(ids.slice(0, 100))
    expect(publisher.maxActive).toBe(8)
    expect((await store.outbox.getCountByStatus()).sent).toBe(100)
    expect(await relay.runOnce()).toBe(100)
    expect(await relay.runOnce()).toBe(50)
    expect(await relay.runOnce()).toBe(0)
    expect(await store.outbox.getCountByStatus()).toEqual({ pending: 0, publishing: 0, sent: 250, failed: 0 })
    expect(relay.counters()).toMatchObject({ claims: 4, claimed: 250, published: 250, failed: 0 })
    // Every sent event was published exactly once, in enqueue order.
    expect(publisher.published.map((event) => event.eventId)).toEqual(ids)
  })

  it('counts a duplicate ack as a success', async () => {
    const { store, publisher, relay } = setup()
    await enqueue(store, 3)
    publisher.outcome = (event) => (event.eventId === 'e-1' ? 'duplicate' : 'ok')
    await relay.runOnce()
    expect(relay.counters()).toMatchObject({ published: 3, duplicates: 1 })
    expect((await store.outbox.get('e-1'))?.status).toBe('sent')
  })

  it('retries a failed publish later with persisted backoff, then publishes it', async () => {
    const { clock, store, publisher, relay } = setup()
    await enqueue(store, 2)
    let failures = 2
    publisher.outcome = (event) => (event.eventId === 'e-0' && failures-- > 0 ? new Error('nats down') : 'ok')
    const start = clock.peekMs()
    await relay.runOnce()
    const first = await store.outbox.get('e-0')
    expect(first).toMatchObject({
      status: 'pending',
      retryCount: 1,
      errorMessage: 'publish failed: nats down',
    })
    expect(first?.availableAt.getTime()).toBe(start + 100)
    expect(first?.claimedBy).toBeUndefined()
    // Not due yet: the backoff lives in the database, not in the relay's memory.
    expect(await relay.runOnce()).toBe(0)
    clock.advance(100)
    expect(await relay.runOnce()).toBe(1)
    const second = await store.outbox.get('e-0')
    expect(second).toMatchObject({ status: 'pending', retryCount: 2 })
    expect(second?.availableAt.getTime()).toBe(start + 100 + 200)
    clock.advance(200)
    await relay.runOnce()
    expect(await store.outbox.get('e-0')).toMatchObject({ status: 'sent', retryCount: 2 })
    expect(relay.counters()).toMatchObject({ failed: 2, retried: 2, dead: 0, published: 2 })
  })

  it('applies jitter within bounds to the persisted delay', async () => {
    const { clock, store, publisher, relay } = setup({ random: () => 0.999 })
    await enqueue(store, 1)
    publisher.outcome = () => new Error('boom')
    await relay.runOnce()
    const delay = ((await store.outbox.get('e-0'))?.availableAt.getTime() ?? 0) - clock.peekMs()
    expect(delay).toBeGreaterThanOrEqual(50)
    expect(delay).toBeLessThan(100)
  })

  it('dead-letters after maxAttempts (retryCount + 1 compared)', async () => {
    const { clock, store, publisher, relay } = setup({ maxAttempts: 3 })
    await enqueue(store, 1)
    publisher.outcome = () => new Error('no stream')
    for (let turn = 0; turn < 3; turn++) {
      expect(await relay.runOnce()).toBe(1)
      clock.advance(10_000)
    }
    expect(await store.outbox.get('e-0')).toMatchObject({
      status: 'failed',
      retryCount: 3,
      errorMessage: 'publish failed 3 times: no stream',
    })
    expect(await relay.runOnce()).toBe(0)
    expect(relay.counters()).toMatchObject({ failed: 3, retried: 2, dead: 1 })
    expect((await store.outbox.getFailedEvents()).map((event) => event.eventId)).toEqual(['e-0'])
  })

  it('renews leases while a batch is in flight', async () => {
    const { clock, store, publisher, sleeper, relay } = setup({ leaseMs: 3_000 })
    await enqueue(store, 2)
    publisher.hold()
    const turn = relay.runOnce()
    await flush()
    clock.advance(2_000)
    expect(sleeper.fire(1_000)).toBe(1)
    await flush()
    expect((await store.outbox.get('e-0'))?.leaseUntil?.getTime()).toBe(clock.peekMs() + 3_000)
    clock.advance(2_000)
    // Without the renewal the lease would have expired by now, and another relay could claim.
    expect(await store.outbox.claim({ leaseMs: 1_000, workerId: 'relay-b' })).toEqual([])
    publisher.release()
    await turn
    expect((await store.outbox.getCountByStatus()).sent).toBe(2)
  })

  it('stops working on an event whose lease was lost and never marks it', async () => {
    const { clock, store, publisher, sleeper, relay } = setup({ leaseMs: 3_000 })
    await enqueue(store, 2)
    publisher.hold()
    const turn = relay.runOnce()
    await flush()
    // The relay stalls past its lease; another relay takes e-0 and e-1.
    clock.advance(3_001)
    const taken = await store.outbox.claim({ leaseMs: 60_000, workerId: 'relay-b' })
    expect(taken).toHaveLength(2)
    sleeper.fire(1_000)
    await flush()
    publisher.release()
    await turn
    for (const id of ['e-0', 'e-1']) {
      expect(await store.outbox.get(id)).toMatchObject({ status: 'publishing', claimedBy: 'relay-b' })
    }
    expect(relay.counters()).toMatchObject({ leaseLost: 2, published: 0 })
  })

  it('counts ids that markManyAsSent did not apply as lost leases', async () => {
    const { clock, store, publisher, relay } = setup({ leaseMs: 3_000 })
    await enqueue(store, 3)
    publisher.hold()
    const turn = relay.runOnce()
    await flush()
    clock.advance(3_001)
    // Taken over between the last renewal and the mark: only the fenced mark can tell.
    await store.outbox.claim({ limit: 1, leaseMs: 60_000, workerId: 'relay-b' })
    publisher.release()
    await turn
    expect(relay.counters()).toMatchObject({ leaseLost: 1, published: 2 })
    expect(await store.outbox.get('e-0')).toMatchObject({ status: 'publishing', claimedBy: 'relay-b' })
  })

  it('does not retry or dead-letter an event whose lease was lost (fenced write refused)', async () => {
    const { clock, store, publisher, relay } = setup({ leaseMs: 3_000, maxAttempts: 1 })
    await enqueue(store, 1)
    publisher.hold()
    publisher.outcome = () => new Error('boom')
    const turn = relay.runOnce()
    await flush()
    clock.advance(3_001)
    await store.outbox.claim({ leaseMs: 60_000, workerId: 'relay-b' })
    publisher.release()
    await turn
    expect(await store.outbox.get('e-0')).toMatchObject({
      status: 'publishing',
      claimedBy: 'relay-b',
      retryCount: 0,
    })
    expect(relay.counters()).toMatchObject({ dead: 0, leaseLost: 1 })
  })

  it('loops at once after a full batch; after a partial one polls sooner, backing off to pollIntervalMs', async () => {
    const { store, sleeper, relay } = setup({ batchSize: 10, pollIntervalMs: 700, minPollIntervalMs: 50 })
    await enqueue(store, 25)
    relay.start()
    await flush()
    // 10 + 10 + 5: two full batches back to back, then the partial one waits the shortest poll.
    expect(relay.counters()).toMatchObject({ claims: 3, published: 25 })
    // (The other sleeps are each batch's lease-renewal timer, leaseMs / 3.)
    const polls = () => sleeper.requested.filter((ms) => ms !== 10_000)
    expect(polls()).toEqual([50])
    // Each empty claim doubles the wait, up to pollIntervalMs.
    for (const ms of [50, 100, 200, 400]) {
      sleeper.fire(ms)
      await flush()
    }
    expect(relay.counters()).toMatchObject({ claims: 7, published: 25 })
    expect(polls()).toEqual([50, 100, 200, 400, 700])
    sleeper.fire(700)
    await flush()
    expect(polls()).toEqual([50, 100, 200, 400, 700, 700])
    // Events again: claimed at the next poll, and the wait is short again.
    await enqueue(store, 3, 'late')
    sleeper.fire(700)
    await flush()
    expect(relay.counters()).toMatchObject({ claims: 9, published: 28 })
    expect(polls().at(-1)).toBe(50)
    await relay.stop()
    expect(relay.state).toBe('stopped')
  })

  it('after a partial claim while keyed events are in flight, claims again when their batch is done: no poll wait, no claims spun on a wake-up hint', async () => {
    // A hint that answers at once while events are pending, as PostgreSQL's check does (here:
    // the waiting events of the keys in flight), and otherwise waits to be aborted.
    let hints = 0
    const wakeup = {
      wait: async (signal: AbortSignal) => {
        hints++
        // (Bounded, so a relay that spins on it fails this test instead of hanging it.)
        if (hints < 100 && (await store.outbox.getCountByStatus()).pending > 0) return true
        return new Promise<boolean>((resolve) =>
          signal.addEventListener('abort', () => resolve(false), { once: true }),
        )
      },
    }
    // keyRun 1: one event per key per claim, so each round waits for the previous batch's marks.
    const { store, publisher, relay } = setup({ batchSize: 10, pollIntervalMs: 3_600_000, wakeup, keyRun: 1 })
    await store.outbox.findOrCreateMany(
      ['a', 'b'].flatMap((key) =>
        [1, 2, 3].map((n) => ({
          eventId: `${key}-${n}`,
          subject: 'orders.created',
          payload: '{}',
          orderingKey: key,
        })),
      ),
    )
    publisher.hold()
    relay.start()
    await flush()
    // The heads a-1 and b-1 are publishing; nothing else is claimable until they are marked.
    expect(relay.counters()).toMatchObject({ claims: 1, published: 0 })
    expect(hints).toBe(0)
    publisher.release()
    await flush()
    // Each round: the keys' next events, claimed as soon as the batch before was marked sent
    // (no poll timer fired: the poll interval is an hour).
    expect(relay.counters()).toMatchObject({ published: 6 })
    expect(publisher.published.map((event) => event.eventId)).toEqual([
      'a-1',
      'b-1',
      'a-2',
      'b-2',
      'a-3',
      'b-3',
    ])
    await relay.stop()
  })

  it('polls at minPollIntervalMs 20 by default, and never longer than pollIntervalMs', async () => {
    const defaults = setup({ batchSize: 10 })
    await enqueue(defaults.store, 5)
    defaults.relay.start()
    await flush()
    expect(defaults.sleeper.requested.filter((ms) => ms !== 10_000)).toEqual([20])
    await defaults.relay.stop()
    const short = setup({ batchSize: 10, pollIntervalMs: 5 })
    await enqueue(short.store, 5)
    short.relay.start()
    await flush()
    expect(short.sleeper.requested.filter((ms) => ms !== 10_000)).toEqual([5])
    await short.relay.stop()
  })

  it('claims early on a wake-up hint instead of waiting for the poll interval', async () => {
    let notify: (() => void) | undefined
    let listened = 0
    const wakeup = {
      listen: async () => {
        listened++
      },
      wait: (signal: AbortSignal) =>
        new Promise<void>((resolve) => {
          notify = resolve
          signal.addEventListener('abort', () => resolve(), { once: true })
        }),
    }
    const { store, relay, publisher } = setup({ pollIntervalMs: 3_600_000, wakeup })
    relay.start()
    await flush()
    expect(listened).toBe(1)
    expect(relay.counters().claims).toBe(1)
    await enqueue(store, 2)
    notify?.()
    await flush()
    expect(publisher.published).toHaveLength(2)
    expect(relay.counters().claims).toBe(2)
    await relay.stop()
  })

  it('falls back to polling when the wake-up hint fails', async () => {
    const wakeup = { wait: async () => Promise.reject(new Error('LISTEN connection lost')) }
    const { relay, sleeper } = setup({ pollIntervalMs: 500, wakeup })
    relay.start()
    await flush()
    // A rejected hint did not turn into a hot loop: the relay still waits for the poll.
    expect(relay.counters().claims).toBe(1)
    expect(sleeper.pending.map((entry) => entry.ms)).toEqual([500])
    await relay.stop()
  })

  it('claims the next batch while one publishes, within one window of publishes in flight', async () => {
    const { store, publisher, relay } = setup({ batchSize: 5, concurrency: 3 })
    const ids = await enqueue(store, 20)
    publisher.hold()
    relay.start()
    await flush()
    // Two batches held (the default batchesInFlight), no third: the first is still publishing.
    expect(relay.counters()).toMatchObject({ claims: 2, claimed: 10 })
    expect(await store.outbox.getCountByStatus()).toMatchObject({ publishing: 10, pending: 10 })
    // The window is the relay's, not the batch's: 3 publishes in flight across both batches.
    expect(publisher.active).toBe(3)
    publisher.release()
    await flush(200)
    expect(await store.outbox.getCountByStatus()).toMatchObject({ sent: 20, publishing: 0, pending: 0 })
    expect(publisher.maxActive).toBe(3)
    // Slots go out in claim order: every event of a batch starts before the next batch's.
    expect(publisher.published.map((event) => event.eventId)).toEqual(ids)
    await relay.stop()
  })

  it('with batchesInFlight 1 runs claim, publish and mark in lockstep', async () => {
    const { store, publisher, relay } = setup({ batchSize: 5, concurrency: 3, batchesInFlight: 1 })
    await enqueue(store, 20)
    publisher.hold()
    relay.start()
    await flush()
    expect(relay.counters()).toMatchObject({ claims: 1, claimed: 5 })
    publisher.release()
    await flush(200)
    expect(await store.outbox.getCountByStatus()).toMatchObject({ sent: 20, publishing: 0 })
    await relay.stop()
  })

  it('marks a finished batch in the background: the next batch publishes meanwhile', async () => {
    const { store, publisher, relay } = setup({ batchSize: 5, concurrency: 5 })
    const ids = await enqueue(store, 10)
    let releaseMark = () => {}
    const markHeld = new Promise<void>((resolve) => {
      releaseMark = resolve
    })
    const outbox = store.outbox as { markManyAsSent: typeof store.outbox.markManyAsSent }
    const mark = outbox.markManyAsSent.bind(store.outbox)
    let marks = 0
    outbox.markManyAsSent = async (eventIds, options) => {
      if (marks++ === 0) await markHeld
      return mark(eventIds, options)
    }
    relay.start()
    await flush(100)
    // The first batch's mark has not returned, and the second batch is published already.
    expect(publisher.published.map((event) => event.eventId)).toEqual(ids)
    expect(await store.outbox.getCountByStatus()).toMatchObject({ sent: 5, publishing: 5 })
    releaseMark()
    await flush(100)
    expect(await store.outbox.getCountByStatus()).toMatchObject({ sent: 10, publishing: 0 })
    await relay.stop()
  })

  it('stop() drains the batch in flight: publishes finish and are marked', async () => {
    const { store, publisher, relay } = setup({ batchSize: 5 })
    await enqueue(store, 5)
    publisher.hold()
    relay.start()
    await flush()
    expect(relay.counters().claimed).toBe(5)
    const claimsAtStop = relay.counters().claims
    let stopped = false
    const stopping = relay.stop().then(() => {
      stopped = true
    })
    await flush()
    expect(stopped).toBe(false)
    expect(relay.state).toBe('stopping')
    publisher.release()
    await stopping
    expect(await store.outbox.getCountByStatus()).toMatchObject({ sent: 5, publishing: 0 })
    // No claim after stop.
    await enqueue(store, 1, 'after')
    await flush()
    expect(relay.counters().claims).toBe(claimsAtStop)
  })

  it('keeps looping when the store fails, and reports it with the classified reason', async () => {
    const logged: { message: string; fields: Record<string, unknown> | undefined }[] = []
    const { store, sleeper, relay } = setup({
      pollIntervalMs: 250,
      logger: {
        ...silentLogger,
        error: (message: string, fields?: Record<string, unknown>) => logged.push({ message, fields }),
      },
    })
    const claim = store.outbox.claim.bind(store.outbox)
    let broken = true
    store.outbox.claim = async (options) => {
      if (broken)
        throw new StorageError('memory', 'outbox.claim', new Error('connection refused'), undefined, {
          reason: 'unavailable',
          retryable: true,
        })
      return claim(options)
    }
    await enqueue(store, 1)
    relay.start()
    await flush()
    expect(relay.counters().storeErrors).toBe(1)
    expect(logged).toContainEqual({
      message: 'outbox.claim failed',
      fields: expect.objectContaining({ reason: 'unavailable', retryable: true }),
    })
    broken = false
    sleeper.fire(250)
    await flush()
    expect(relay.counters().published).toBe(1)
    await relay.stop()
  })

  it('runs resetStale and cleanup periodically', async () => {
    const { clock, store, sleeper, relay } = setup({
      pollIntervalMs: 1_000,
      retention: { staleMinutes: 5, sentOlderThanDays: 1, everyMs: 60_000 },
    })
    await enqueue(store, 2)
    await relay.runOnce()
    await store.outbox.findOrCreate({ eventId: 'legacy', subject: 'orders.created', payload: '' })
    await store.outbox.markAsPublishing('legacy')
    clock.advance(2 * 86_400_000)
    relay.start()
    await flush()
    // The maintenance at start reset the lease-less publishing event and deleted the old sent ones.
    expect(relay.counters()).toMatchObject({ staleReset: 1, cleanedUp: 2 })
    expect((await store.outbox.get('legacy'))?.status).toBe('sent')
    clock.advance(1_000)
    sleeper.fire()
    await flush()
    expect(relay.counters().staleReset).toBe(1)
    await relay.stop()
  })

  it('reports metrics with the age of the oldest due event', async () => {
    const { clock, store, relay } = setup()
    await enqueue(store, 2)
    clock.advance(1_500)
    const metrics = await relay.metrics()
    expect(metrics).toMatchObject({
      workerId: 'relay-a',
      oldestPendingAgeMs: 1_500,
      published: 0,
      state: 'idle',
    })
    await relay.runOnce()
    // Drained: nothing is waiting, so the age is 0 (not null, which means "unknown").
    expect((await relay.metrics()).oldestPendingAgeMs).toBe(0)
    store.outbox.findPending = async () => {
      throw new Error('db down')
    }
    expect((await relay.metrics()).oldestPendingAgeMs).toBeNull()
  })

  it('reports health: store, publisher, loop liveness', async () => {
    const { clock, store, publisher, relay } = setup({ healthStaleMs: 10_000 })
    expect((await relay.health()).loop.ok).toBe(false)
    relay.start()
    await flush()
    expect(await relay.health()).toMatchObject({ ok: true })
    publisher.connected = false
    expect(await relay.health()).toMatchObject({ ok: false, publisher: { ok: false, detail: 'down' } })
    publisher.connected = true
    clock.advance(10_001)
    expect(await relay.health()).toMatchObject({ ok: false, loop: { ok: false } })
    store.outbox.getCountByStatus = async () => {
      throw new Error('db down')
    }
    expect((await relay.health()).store).toEqual({ ok: false, detail: 'db down' })
    await relay.stop()
  })

  it('exposes Prometheus metrics through prom-client', async () => {
    const { store, relay } = setup()
    await enqueue(store, 3)
    await relay.runOnce()
    const exporter = await createPrometheusExporter({ relay })
    const text = await exporter.metrics()
    expect(text).toContain('txbox_relay_published_total{worker_id="relay-a"} 3')
    expect(text).toContain('txbox_relay_claim_latency_ms_max{worker_id="relay-a"}')
    expect(exporter.contentType).toContain('text/plain')
  })

  it('validates its options', () => {
    const store = createMemoryStore()
    const publisher = new FakePublisher()
    expect(() => new OutboxRelay({ outbox: store.outbox, publisher, batchSize: 0 })).toThrow(ValidationError)
    expect(() => new OutboxRelay({ outbox: store.outbox, publisher, concurrency: 1.5 })).toThrow(
      ValidationError,
    )
    expect(() => new OutboxRelay({ outbox: store.outbox, publisher, workerId: '' })).toThrow(ValidationError)
  })
})
