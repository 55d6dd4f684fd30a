import { describe, expect, it } from 'vitest'
import {
  createMemoryStore,
  MemoryOutboxRepository,
  type OutboxEvent,
  OutboxRelay,
  type OutboxRelayOptions,
  type PublishReceipt,
  ValidationError,
} from '../src/index.js'
import { flush, relayOverMemory } from './helpers.js'

/** A publish the test answers by hand, in any order. */
interface PendingPublish {
  readonly eventId: string
  ack(): void
  fail(error: Error): void
}

/** Records when each publish starts and leaves its PubAck to the test. */
class ManualAckPublisher {
  readonly started: string[] = []
  readonly acked: string[] = []
  readonly #pending = new Map<string, PendingPublish>()

  publish(event: OutboxEvent): Promise<PublishReceipt> {
    this.started.push(event.eventId)
    return new Promise<PublishReceipt>((resolve, reject) => {
      this.#pending.set(event.eventId, {
        eventId: event.eventId,
        ack: () => {
          this.#pending.delete(event.eventId)
          this.acked.push(event.eventId)
          resolve({ duplicate: false })
        },
        fail: (error) => {
          this.#pending.delete(event.eventId)
          reject(error)
        },
      })
    })
  }

  /** The publishes awaiting their answer, in the order they started. */
  inFlight(): string[] {
    return [...this.#pending.keys()]
  }

  async ack(eventId: string): Promise<void> {
    const pending = this.#pending.get(eventId)
    if (!pending)
      throw new Error(`${eventId} is not being published (in flight: ${this.inFlight().join(', ')})`)
    pending.ack()
    await flush()
  }

  async fail(eventId: string, message: string): Promise<void> {
    const pending = this.#pending.get(eventId)
    if (!pending)
      throw new Error(`${eventId} is not being published (in flight: ${this.inFlight().join(', ')})`)
    pending.fail(new Error(message))
    await flush()
  }
}

const keyed = (key: string, count: number) =>
  Array.from({ length: count }, (_, index) => ({
    eventId: `${key}-${index + 1}`,
    subject: 'orders.created',
    payload: '{}',
    orderingKey: key,
  }))

const setup = (options: Partial<Omit<OutboxRelayOptions, 'publisher'>> = {}) =>
  relayOverMemory({
    publisher: new ManualAckPublisher(),
    backoff: { baseMs: 1_000, maxMs: 1_000, jitter: 0 },
    ...options,
  })

describe('OutboxRelay over key runs', () => {
  it("claims a key's run at once and publishes it in keySeq order, each event after the previous PubAck, keys side by side", async () => {
    const { store, publisher, relay } = setup({ batchSize: 100, keyRun: 3 })
    await store.outbox.findOrCreateMany([
      ...keyed('a', 3),
      ...keyed('b', 4),
      { eventId: 'u', subject: 'orders.created', payload: '{}' },
    ])
    const run = relay.runOnce()
    await flush()
    // One claim: a-1..a-3, b-1..b-3 (keyRun 3; b-4 waits) and u. One publish per key in flight.
    expect(publisher.inFlight()).toEqual(['a-1', 'b-1', 'u'])
    // Acks out of order: b before a, u last. Each key's next publish starts only on its ack.
    await publisher.ack('b-1')
    expect(publisher.inFlight()).toEqual(['a-1', 'u', 'b-2'])
    await publisher.ack('b-2')
    expect(publisher.inFlight()).toEqual(['a-1', 'u', 'b-3'])
    await publisher.ack('a-1')
    expect(publisher.inFlight()).toEqual(['u', 'b-3', 'a-2'])
    await publisher.ack('b-3')
    await publisher.ack('u')
    await publisher.ack('a-2')
    expect(publisher.inFlight()).toEqual(['a-3'])
    await publisher.ack('a-3')
    expect(await run).toBe(7)
    expect(publisher.started).toEqual(['a-1', 'b-1', 'u', 'b-2', 'b-3', 'a-2', 'a-3'])
    expect((await store.outbox.get('b-3'))?.status).toBe('sent')
    expect((await store.outbox.get('b-4'))?.status).toBe('pending')
    expect(relay.counters()).toMatchObject({ claims: 1, published: 7 })
  })

  it('after a failed publish mid-run, releases the rest unpublished; the key resumes from the retried event after its backoff, in order', async () => {
    const { clock, store, publisher, relay } = setup({ batchSize: 100, keyRun: 10 })
    await store.outbox.findOrCreateMany(keyed('k', 4))
    const first = relay.runOnce()
    await flush()
    await publisher.ack('k-1')
    await publisher.fail('k-2', 'broker hiccup')
    expect(await first).toBe(4)
    // k-3 and k-4 were never published: released, not retried.
    expect(publisher.started).toEqual(['k-1', 'k-2'])
    const [k1, k2, k3, k4] = await Promise.all(['k-1', 'k-2', 'k-3', 'k-4'].map((id) => store.outbox.get(id)))
    expect(k1?.status).toBe('sent')
    expect(k2).toMatchObject({
      status: 'pending',
      retryCount: 1,
      errorMessage: 'publish failed: broker hiccup',
    })
    for (const released of [k3, k4]) {
      expect(released).toMatchObject({ status: 'pending', retryCount: 0 })
      expect(released?.claimedBy).toBeUndefined()
      expect(released?.leaseUntil).toBeUndefined()
    }
    // Through k-2's backoff nothing of the key is claimed, although k-3 and k-4 are due.
    expect(await relay.runOnce()).toBe(0)
    clock.advance(1_000)
    const second = relay.runOnce()
    await flush()
    expect(publisher.inFlight()).toEqual(['k-2'])
    await publisher.ack('k-2')
    await publisher.ack('k-3')
    await publisher.ack('k-4')
    expect(await second).toBe(3)
    expect(publisher.acked).toEqual(['k-1', 'k-2', 'k-3', 'k-4'])
    expect((await store.outbox.getCountByStatus()).sent).toBe(4)
  })

  it('when the release fails, leaves the failed event and the rest publishing: the expired run is claimed again from the failed event', async () => {
    const { clock, store, publisher, relay } = setup({ batchSize: 100, leaseMs: 10_000, keyRun: 10 })
    await store.outbox.findOrCreateMany(keyed('k', 3))
    const release = store.outbox.release.bind(store.outbox)
    store.outbox.release = async () => {
      throw new Error('database down')
    }
    const first = relay.runOnce()
    await flush()
    await publisher.fail('k-1', 'broker hiccup')
    await first
    expect(relay.counters().storeErrors).toBe(1)
    // k-1's failure was not recorded: recording it would have let k-2 (publishing) run first.
    for (const id of ['k-1', 'k-2', 'k-3'])
      expect(await store.outbox.get(id)).toMatchObject({ status: 'publishing', retryCount: 0 })
    store.outbox.release = release
    clock.advance(10_000)
    const second = relay.runOnce()
    await flush()
    expect(publisher.inFlight()).toEqual(['k-1'])
    await publisher.ack('k-1')
    await publisher.ack('k-2')
    await publisher.ack('k-3')
    expect(await second).toBe(3)
    expect(publisher.acked).toEqual(['k-1', 'k-2', 'k-3'])
  })

  it('keyRun 1 (the default) claims one event per key per claim, as before', async () => {
    const { store, publisher, relay } = setup({ batchSize: 100 })
    await store.outbox.findOrCreateMany(keyed('k', 2))
    const first = relay.runOnce()
    await flush()
    expect(publisher.inFlight()).toEqual(['k-1'])
    await publisher.ack('k-1')
    expect(await first).toBe(1)
    const second = relay.runOnce()
    await flush()
    await publisher.ack('k-2')
    expect(await second).toBe(1)
  })

  it('refuses a keyRun that is not an integer from 1 to 10,000, or above 1 on a store without keyRuns', () => {
    for (const keyRun of [0, 1.5, 10_001, Number.NaN])
      expect(() => setup({ keyRun })).toThrow(/keyRun must be an integer from 1 to 10000/)
    class NoRunsOutbox extends MemoryOutboxRepository {
      override readonly keyRuns = false
    }
    const outbox = new NoRunsOutbox()
    const publisher = new ManualAckPublisher()
    expect(() => new OutboxRelay({ outbox, publisher, keyRun: 2 })).toThrow(ValidationError)
    expect(() => new OutboxRelay({ outbox, publisher, keyRun: 2 })).toThrow(/declare keyRuns/)
    expect(() => new OutboxRelay({ outbox, publisher, keyRun: 1 })).not.toThrow()
    expect(() => new OutboxRelay({ outbox, publisher })).not.toThrow()
  })
})

describe('claim keyRun and release on the kernel', () => {
  it('refuses keyRun outside 1..limit, and keyRun above 1 or release on a store without keyRuns', async () => {
    const store = createMemoryStore()
    const claim = (keyRun: unknown, limit = 10) =>
      store.outbox.claim({ limit, leaseMs: 1_000, workerId: 'w', keyRun: keyRun as number })
    for (const keyRun of [0, 11, 2.5, '2'])
      await expect(claim(keyRun)).rejects.toThrow(
        /outbox: keyRun must be an integer from 1 to the claim's limit \(10\)/,
      )
    await expect(claim(10)).resolves.toEqual([])
    class NoRunsOutbox extends MemoryOutboxRepository {
      override readonly keyRuns = false
    }
    const outbox = new NoRunsOutbox()
    await expect(outbox.claim({ limit: 10, leaseMs: 1_000, workerId: 'w', keyRun: 2 })).rejects.toThrow(
      /keyRun 2 is not supported by this store \(its capabilities do not declare keyRuns\)/,
    )
    await expect(outbox.claim({ limit: 10, leaseMs: 1_000, workerId: 'w', keyRun: 1 })).resolves.toEqual([])
    await expect(outbox.release(['a'], { workerId: 'w' })).rejects.toThrow(ValidationError)
    await expect(store.outbox.release(['a'], { workerId: '' })).rejects.toThrow(/workerId/)
  })
})
