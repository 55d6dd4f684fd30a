import type { NatsConnection } from 'nats'
import { describe, expect, it } from 'vitest'
import {
  createMemoryStore,
  InboxProcessor,
  type InboxProcessorCommonOptions,
  MAX_LEASE_MS,
  MAX_TIMER_MS,
  ManualClock,
  OutboxRelay,
  type OutboxRelayOptions,
  silentLogger,
  ValidationError,
} from '../src/index.js'
import { createJetStreamPublisher } from '../src/nats/index.js'
import { FakePublisher, FakeSource, ManualSleeper } from './helpers.js'

// Configuration that can never work is refused when the relay or the processor is built,
// naming the option, instead of failing on every claim (or spinning a 1 ms timer) forever.

const relayWith = (options: Partial<OutboxRelayOptions>): OutboxRelay => {
  const clock = new ManualClock()
  const store = createMemoryStore({ clock: clock.now })
  return new OutboxRelay({
    outbox: store.outbox,
    publisher: new FakePublisher(),
    clock: clock.now,
    logger: silentLogger,
    ...options,
  })
}

const processorWith = (options: Partial<InboxProcessorCommonOptions<never>>) =>
  new InboxProcessor({
    inbox: createMemoryStore().inbox,
    source: new FakeSource(),
    handler: async () => {},
    logger: silentLogger,
    ...options,
  })

const refusal = (build: () => unknown): ValidationError => {
  try {
    build()
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError)
    return error as ValidationError
  }
  throw new Error('expected a ValidationError, but the options were accepted')
}

/** [option, value, the message after the `[txbox] [relay]` prefix]. */
const refusedByRelay: [string, Partial<OutboxRelayOptions>, string][] = [
  [
    'leaseMs above every claim',
    { leaseMs: 9_999_999_999 },
    'leaseMs must be an integer from 1 to 2147483647',
  ],
  ['leaseMs 0', { leaseMs: 0 }, 'leaseMs must be an integer from 1 to 2147483647; got 0'],
  ['leaseMs fractional', { leaseMs: 1.5 }, 'leaseMs must be an integer from 1 to 2147483647; got 1.5'],
  ['batchSize 0', { batchSize: 0 }, 'batchSize must be an integer from 1 to 10000; got 0'],
  ['batchSize above a claim', { batchSize: 10_001 }, 'batchSize must be an integer from 1 to 10000'],
  ['workerId too long', { workerId: 'w'.repeat(256) }, 'workerId must be a non-empty string of at most 255'],
  ['workerId empty', { workerId: '' }, 'workerId must be a non-empty string'],
  ['concurrency 0', { concurrency: 0 }, 'concurrency must be an integer from 1 to 10000; got 0'],
  ['concurrency NaN', { concurrency: Number.NaN }, 'concurrency must be an integer from 1 to 10000; got NaN'],
  [
    'minPollIntervalMs above pollIntervalMs',
    { pollIntervalMs: 100, minPollIntervalMs: 101 },
    'minPollIntervalMs 101 is larger than pollIntervalMs 100; lower it or raise pollIntervalMs',
  ],
  [
    'minPollIntervalMs negative',
    { minPollIntervalMs: -1 },
    'minPollIntervalMs must be a number of milliseconds from 0',
  ],
  ['batchesInFlight 0', { batchesInFlight: 0 }, 'batchesInFlight must be an integer from 1 to 64; got 0'],
  [
    'batchesInFlight above 64',
    { batchesInFlight: 65 },
    'batchesInFlight must be an integer from 1 to 64; got 65',
  ],
  [
    'batchesInFlight fractional',
    { batchesInFlight: 1.5 },
    'batchesInFlight must be an integer from 1 to 64; got 1.5',
  ],
  ['maxAttempts 0', { maxAttempts: 0 }, 'maxAttempts must be an integer from 1 to 9007199254740991'],
  [
    'pollIntervalMs beyond a timer',
    { pollIntervalMs: MAX_TIMER_MS + 1 },
    'pollIntervalMs must be a number of milliseconds from 0 to 2147483647',
  ],
  [
    'pollIntervalMs negative',
    { pollIntervalMs: -1 },
    'pollIntervalMs must be a number of milliseconds from 0',
  ],
  [
    'renewEveryMs beyond a timer',
    { renewEveryMs: 3_000_000_000 },
    'renewEveryMs must be a number of milliseconds from 1 to 2147483647',
  ],
  ['renewEveryMs 0', { renewEveryMs: 0 }, 'renewEveryMs must be a number of milliseconds from 1'],
  [
    'backoff.baseMs beyond exact integers (named, not the ceiling)',
    { backoff: { baseMs: 1e20 } },
    'backoff.baseMs must be an integer from 0 to 9007199254740991; got 100000000000000000000',
  ],
  [
    'backoff.maxMs beyond exact integers',
    { backoff: { maxMs: 2 ** 53 } },
    'backoff.maxMs must be an integer from 0 to 9007199254740991',
  ],
  ['backoff.baseMs fractional', { backoff: { baseMs: 0.5 } }, 'backoff.baseMs must be an integer from 0'],
  [
    'backoff.baseMs above the default ceiling',
    { backoff: { baseMs: 90_000 } },
    'backoff.baseMs 90000 is larger than the default backoff.maxMs 60000',
  ],
  [
    'backoff.baseMs above its ceiling',
    { backoff: { baseMs: 5_000, maxMs: 1_000 } },
    'backoff.baseMs 5000 is larger than backoff.maxMs 1000',
  ],
  ['backoff.jitter above 1', { backoff: { jitter: 2 } }, 'backoff.jitter must be between 0 and 1; got 2'],
  [
    'retention.sentOlderThanDays with no cutoff date',
    { retention: { sentOlderThanDays: 1e300 } },
    'retention.sentOlderThanDays must be small enough that now minus it is a valid date',
  ],
  [
    'retention.staleMinutes with no cutoff date',
    { retention: { staleMinutes: 1e12 } },
    'retention.staleMinutes must be small enough that now minus it is a valid date',
  ],
  [
    'retention.sentOlderThanDays negative',
    { retention: { sentOlderThanDays: -1 } },
    'retention.sentOlderThanDays must be a finite number >= 0',
  ],
  ['retention.everyMs infinite', { retention: { everyMs: Infinity } }, 'retention.everyMs must be a finite'],
  ['healthStaleMs negative', { healthStaleMs: -1 }, 'healthStaleMs must be a finite number >= 0'],
  ['failureLogEveryMs NaN', { failureLogEveryMs: Number.NaN }, 'failureLogEveryMs must be a finite number'],
  ['maxEventBytes 0', { maxEventBytes: 0 }, 'maxEventBytes must be a positive integer'],
  ['maxEventBytes fractional', { maxEventBytes: 1.5 }, 'maxEventBytes must be a positive integer'],
  ['maxBatchBytes 0', { maxBatchBytes: 0 }, 'maxBatchBytes must be an integer from 1 to'],
  [
    'maxBatchBytes beyond exact integers',
    { maxBatchBytes: 2 ** 60 },
    'maxBatchBytes must be an integer from 1',
  ],
]

describe('OutboxRelay refuses, when built, options that can never work', () => {
  it.each(refusedByRelay)('%s', (_what, options, message) => {
    expect(refusal(() => relayWith(options)).message).toContain(`[txbox] [relay] ${message}`)
  })

  it('accepts every limit itself, and a claim with the longest lease works', async () => {
    const clock = new ManualClock()
    const store = createMemoryStore({ clock: clock.now })
    await store.outbox.findOrCreate({ eventId: 'e-1', subject: 'orders.created', payload: '{}' })
    const publisher = new FakePublisher()
    const relay = new OutboxRelay({
      outbox: store.outbox,
      publisher,
      clock: clock.now,
      sleep: new ManualSleeper().sleep,
      logger: silentLogger,
      workerId: 'w'.repeat(255),
      leaseMs: MAX_LEASE_MS,
      batchSize: 10_000,
      concurrency: 10_000,
      batchesInFlight: 64,
      renewEveryMs: MAX_TIMER_MS,
      pollIntervalMs: 0,
      backoff: { baseMs: Number.MAX_SAFE_INTEGER, maxMs: Number.MAX_SAFE_INTEGER, jitter: 1 },
      retention: { sentOlderThanDays: 0, staleMinutes: 0, everyMs: 0 },
      maxEventBytes: 1,
      maxBatchBytes: 1,
    })
    // maxEventBytes 1 dead-letters the event; what matters is that the claim itself was taken.
    expect(await relay.runOnce()).toBe(1)
    expect((await store.outbox.get('e-1'))?.status).toBe('failed')
  })
})

describe("the relay's limits are the store's", () => {
  // What the relay refuses at construction, the store refuses on every call it would make;
  // what it accepts, the store accepts. So the two cannot drift apart.
  const store = createMemoryStore()

  it.each([0, 1, MAX_LEASE_MS, MAX_LEASE_MS + 1, 9_999_999_999])('leaseMs %d', async (leaseMs) => {
    const claim = store.outbox.claim({ leaseMs, workerId: 'w', limit: 1 })
    let relayError: unknown
    try {
      relayWith({ leaseMs })
    } catch (error) {
      relayError = error
    }
    if (relayError === undefined) await expect(claim).resolves.toBeDefined()
    else {
      const storeError = await claim.then(
        () => undefined,
        (error: unknown) => error,
      )
      expect(storeError).toBeInstanceOf(ValidationError)
      expect((relayError as Error).message.replace('[relay]', '')).toBe(
        (storeError as Error).message.replace('[memory] outbox:', ''),
      )
    }
  })

  it.each([0, 10_000, 10_001])(
    'batchSize %d is a claim limit the store takes exactly when the relay does',
    async (limit) => {
      const accepted = (() => {
        try {
          relayWith({ batchSize: limit })
          return true
        } catch {
          return false
        }
      })()
      const stored = await store.outbox.claim({ limit, leaseMs: 1_000, workerId: 'w' }).then(
        () => true,
        () => false,
      )
      expect(accepted).toBe(stored)
    },
  )

  it.each([
    [{ baseMs: Number.MAX_SAFE_INTEGER, maxMs: Number.MAX_SAFE_INTEGER }, Number.MAX_SAFE_INTEGER],
    [{ baseMs: 0, maxMs: 2 ** 53 }, 2 ** 53],
  ])(
    'backoff %o: retryLater takes the longest delay exactly when the relay does',
    async (backoff, delayMs) => {
      const accepted = (() => {
        try {
          relayWith({ backoff })
          return true
        } catch {
          return false
        }
      })()
      const outbox = createMemoryStore().outbox
      await outbox.findOrCreate({ eventId: 'e-1', subject: 'a', payload: '' })
      const stored = await outbox.retryLater('e-1', { errorMessage: 'x', delayMs }).then(
        () => true,
        (error: unknown) => {
          expect(error).toBeInstanceOf(ValidationError)
          return false
        },
      )
      expect(accepted).toBe(stored)
    },
  )
})

/** [option, value, the message after the `[txbox] [inbox-processor]` prefix]. */
const refusedByProcessor: [string, Partial<InboxProcessorCommonOptions<never>>, string][] = [
  [
    'leaseMs above every claim',
    { leaseMs: 9_999_999_999 },
    'leaseMs must be an integer from 1 to 2147483647',
  ],
  ['leaseMs 0', { leaseMs: 0 }, 'leaseMs must be an integer from 1 to 2147483647; got 0'],
  ['workerId too long', { workerId: 'w'.repeat(256) }, 'workerId must be a non-empty string of at most 255'],
  [
    'ackProgressEveryMs beyond a timer',
    { ackProgressEveryMs: MAX_TIMER_MS + 1 },
    'ackProgressEveryMs must be a number of milliseconds from 1 to 2147483647',
  ],
  [
    'ackProgressEveryMs 0',
    { ackProgressEveryMs: 0 },
    'ackProgressEveryMs must be a number of milliseconds from 1',
  ],
  ['concurrency 0', { concurrency: 0 }, 'concurrency must be an integer from 1 to'],
  [
    'workerId without room for the delivery number',
    { workerId: 'w'.repeat(244) },
    'workerId must be at most 243 characters',
  ],
  ['maxDeliveries fractional', { maxDeliveries: 2.5 }, 'maxDeliveries must be an integer from 1 to'],
  [
    'backoff.baseMs beyond exact integers',
    { backoff: { baseMs: 1e20 } },
    'backoff.baseMs must be an integer from 0 to 9007199254740991',
  ],
  [
    'backoff.baseMs above the default ceiling',
    { backoff: { baseMs: 90_000 } },
    'backoff.baseMs 90000 is larger than the default backoff.maxMs 60000',
  ],
  ['backoff.jitter negative', { backoff: { jitter: -0.1 } }, 'backoff.jitter must be between 0 and 1'],
]

describe('InboxProcessor refuses, when built, options that can never work', () => {
  it.each(refusedByProcessor)('%s', (_what, options, message) => {
    expect(refusal(() => processorWith(options)).message).toContain(`[txbox] [inbox-processor] ${message}`)
  })

  it('accepts every limit itself', () => {
    const processor = processorWith({
      // 243 + '#' and up to 11 base-36 digits of the delivery number: 255, the claim's limit.
      workerId: 'w'.repeat(243),
      leaseMs: MAX_LEASE_MS,
      ackProgressEveryMs: MAX_TIMER_MS,
      backoff: { baseMs: 0, maxMs: Number.MAX_SAFE_INTEGER, jitter: 0 },
    })
    expect(processor.workerId).toBe('w'.repeat(243))
  })
})

describe('the JetStream publisher', () => {
  // Only the constructor's checks run: they come before the connection is used.
  const connection = { jetstream: () => ({}) } as unknown as NatsConnection

  it.each([
    [MAX_TIMER_MS + 1, 'a timeout Node would fire after 1 ms'],
    [0, 'no time at all'],
    [1.5, 'a fraction'],
  ])('refuses timeoutMs %s (%s), naming it', (timeoutMs) => {
    expect(() => createJetStreamPublisher({ connection, timeoutMs })).toThrow(ValidationError)
    expect(() => createJetStreamPublisher({ connection, timeoutMs })).toThrow(
      /timeoutMs must be an integer from 1 to 2147483647/,
    )
  })
})
